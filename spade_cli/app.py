"""The skeleton every console script runs on: parse, quiet TensorFlow, run, map errors.

- A :class:`~spade_tf.errors.SpadeError` (bad input, settings or files) prints
  ``PROG: error: MESSAGE`` on one line and exits with its status (2), no traceback.
- Ctrl-C (KeyboardInterrupt) prints ``PROG: interrupted`` and exits with 130, at any
  moment after this module is imported: in a command's own process, importing it holds
  SIGINT until :func:`run` can answer it and TensorFlow is imported, so a Ctrl-C during
  start-up is not a traceback; one Python swallowed in a callback is delivered again
  (:func:`~spade_cli.quiet.redeliver_swallowed_interrupts`).
- Anything else is a bug: its traceback is printed as usual.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable

from spade_cli.quiet import (
    VERBOSE_ENV,
    hold_sigint,
    quiet_tensorflow,
    redeliver_swallowed_interrupts,
    release_sigint,
)
from spade_tf.errors import SpadeError

VERBOSE_NOTE = f"TensorFlow's own log lines are hidden; {VERBOSE_ENV}=1 shows them."

Command = Callable[[argparse.Namespace], "int | None"]


def _started_as_a_command() -> bool:
    """Whether this process is a console script (``spade-train``) or ``python -m
    spade_cli.train``; not a program (or a test) that imports this module."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None:
        return spec.name.startswith("spade_cli.")
    return os.path.basename(sys.argv[0] if sys.argv else "").startswith("spade-")


# Held until run() is inside its try: a Ctrl-C while the command's modules import
# would otherwise end in a traceback.  Others who import this module keep their Ctrl-C.
_START_UP_HOLD = hold_sigint() if _started_as_a_command() else None


class UsageError(SpadeError):
    """A problem a command finds in its own arguments (a file it cannot read, a clash)."""


def command_name(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``spade-eval fid`` for a subcommand, else the program name."""
    subcommand = getattr(args, "command", None)
    return f"{parser.prog} {subcommand}" if subcommand else parser.prog


def run(parser: argparse.ArgumentParser, command: Command, argv: list[str] | None = None,
        uses_tensorflow: Callable[[argparse.Namespace], bool] = lambda args: True) -> int:
    """Parse ``argv`` (default: the command line), run ``command(args)``; the exit status.

    TensorFlow is imported here, quietly, when ``uses_tensorflow(args)``; commands that
    never need it (``spade-eval synthetic``) skip the seconds it takes.
    """
    args = parser.parse_args(argv)
    name = command_name(parser, args)
    # Training, export and serving are TensorFlow's (README: "On every Keras 3 backend"); a
    # KERAS_BACKEND chosen for the user's own JAX or PyTorch work must not reach them.
    # The .keras files are the same on every backend.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    redeliver_swallowed_interrupts()  # a Ctrl-C in a gc callback is not lost
    try:
        try:  # TensorFlow's import inside the start-up hold too: a Ctrl-C in one of its
            # C extensions' initialisers became an ImportError, one in JAX's gc callback
            # (TensorFlow imports JAX where installed) was swallowed
            quiet_tensorflow(import_tensorflow=uses_tensorflow(args))
        finally:
            release_sigint(_START_UP_HOLD)  # a Ctrl-C pressed during start-up surfaces here
        status = command(args)
    except SpadeError as error:
        label = f"{error.label}: " if error.label else ""
        print(f"{name}: {label}{error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else status


class _Parser(argparse.ArgumentParser):
    """argparse, naming an unknown option (and the one meant) before anything else: a typo
    such as ``--model_dir`` would otherwise read "the following arguments are required"."""

    def parse_known_args(self, args=None, namespace=None):
        tokens = sys.argv[1:] if args is None else list(args)
        if self._subparsers is None:  # a subcommand's parser checks its own options
            self._refuse_unknown_options(tokens)
        return super().parse_known_args(args, namespace)

    def _refuse_unknown_options(self, tokens: list[str]) -> None:
        known = [option for option in self._option_string_actions if option.startswith("--")]
        for token in tokens:
            if token == "--":
                return
            name = token.split("=", 1)[0]
            if not name.startswith("--") or any(option.startswith(name) for option in known):
                continue  # a value, or a known option (argparse takes unique prefixes)
            close = difflib.get_close_matches(name.replace("_", "-"), known, n=1, cutoff=0.6)
            hint = f": did you mean {close[0]}?" if close else f" (see {self.prog} --help)"
            self.error(f"unrecognized option {name}{hint}")


def add_precision_option(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """``--precision``, the same flag, words and default in every inference command."""
    from spade_tf.config import PRECISION_HELP, PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS,
                        help=f"{scope}{PRECISION_HELP} (default: the model config's "
                             "export.precision, float32 unless set)")


def add_weights_option(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """``--weights``, the same flag, words and default in every command that loads a model
    folder's generator."""
    from spade_tf.layout import WEIGHTS

    parser.add_argument("--weights", choices=WEIGHTS,
                        help=f"{scope}which generator: ema (the average of its weights kept "
                             "while training, train.ema_decay > 0) or raw (the trained one); "
                             "default: ema where the model folder has it, else raw")


def new_parser(prog: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    """A parser whose epilog (the examples) keeps its line breaks."""
    epilog = f"{epilog}\n{VERBOSE_NOTE}" if epilog else VERBOSE_NOTE
    return _Parser(prog=prog, description=description, epilog=epilog,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
