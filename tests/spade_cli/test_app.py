"""The console-script skeleton: --help without TensorFlow, one-line errors, exit statuses."""

import argparse

import pytest
from support.processes import COMMAND_MODULES as TOOLS
from support.processes import run_python

from spade_cli import app
from spade_tf.config import ConfigError
from spade_tf.training import LossBecameNaN

COMMAND_MODULES = sorted(TOOLS.values())


def test_every_help_answers_without_importing_tensorflow():
    result = run_python(f"""
        import contextlib, importlib, io, json, sys
        answers = {{}}
        for name in {COMMAND_MODULES!r}:
            module = importlib.import_module("spade_cli." + name)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    module.main(["--help"])
                except SystemExit as exited:
                    answers[name] = [exited.code, out.getvalue().startswith("usage: spade-")]
        answers["tensorflow"] = "tensorflow" in sys.modules
        print(json.dumps(answers))
    """)
    assert result.pop("tensorflow") is False
    assert result == {name: [0, True] for name in COMMAND_MODULES}


def _parser() -> argparse.ArgumentParser:
    parser = app.new_parser("spade-x", "test")
    parser.add_argument("--fail", default="")
    return parser


def _command(args):
    if args.fail == "config":
        raise ConfigError("model.num_classes=0 is invalid: expected a positive class count.")
    if args.fail == "nan":
        raise LossBecameNaN("loss g_gan became nan at step 3")
    if args.fail == "interrupt":
        raise KeyboardInterrupt
    if args.fail == "bug":
        raise ZeroDivisionError("a bug keeps its traceback")
    return 4 if args.fail == "status" else None


@pytest.mark.parametrize("fail, status, line", [
    ("", 0, ""),
    ("status", 4, ""),
    ("config", 2, "spade-x: error: model.num_classes=0 is invalid: expected a positive class "
                  "count.\n"),
    ("nan", 3, "spade-x: stopped: loss g_gan became nan at step 3\n"),
    ("interrupt", 130, "spade-x: interrupted\n"),
])
def test_outcomes_become_one_line_and_a_status(fail, status, line, capsys):
    assert app.run(_parser(), _command, ["--fail", fail]) == status
    assert capsys.readouterr().err == line


def test_a_bug_is_not_hidden():
    with pytest.raises(ZeroDivisionError):
        app.run(_parser(), _command, ["--fail", "bug"])


def test_subcommands_are_named_in_errors(capsys):
    parser = app.new_parser("spade-y", "test")
    parser.add_subparsers(dest="command").add_parser("go")

    def fail(args):
        raise ConfigError("bad")

    assert app.run(parser, fail, ["go"]) == 2
    assert capsys.readouterr().err == "spade-y go: error: bad\n"
