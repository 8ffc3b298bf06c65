"""The README and docs/: Python examples run as written, every documented import works,
every relative link and package path points at something, every console command and its
options are documented, and the README stays short.

```python blocks run (each in a namespace of its own, in a fresh interpreter, in an empty
working folder, as a reader would run them); ```py blocks need a running server or files of
the reader's, so only their imports are checked.
"""

import argparse
import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT
from support.processes import command_env

README = "README.md"
DOCS = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md"))
# Documents whose imports are checked, and those that must show some.
DOCUMENTS = [README, *DOCS, "serving/deploy/README.md"]
SHOW_IMPORTS = [README, "docs/evaluation.md", "docs/export-and-serve.md"]
MAX_README_LINES = 400
RUN_BLOCKS = """
import json, sys
for name, block in json.load(open(sys.argv[1])):
    exec(compile(block, name, "exec"), {})
"""
# A package path written in backquotes, as `spade_tf/layers/common.py` or `serving/deploy/`.
PACKAGE_PATH = re.compile(
    r"`((?:spade_tf|spade_cli|serving|tfrecords_tools|tests|benchmarks|scripts|configs)"
    r"/[\w./-]*)`")
CONSOLE_SCRIPT = re.compile(r'"(spade-[\w-]+)=spade_cli\.(\w+):main"')


def _text(document: str) -> str:
    return (ROOT / document).read_text()


def _fenced(text: str) -> tuple[list[tuple[str, str]], str]:
    """The fenced code blocks of Markdown ``text`` as (info string, body), and the text
    outside them (links in code are not links)."""
    blocks, prose, info, body = [], [], None, []
    for line in text.splitlines(keepends=True):
        fence = line.strip().startswith("```")
        if info is None and fence:
            info, body = line.strip()[3:].strip(), []
        elif info is not None and fence:
            blocks.append((info, "".join(body)))
            info = None
        elif info is not None:
            body.append(line)
        else:
            prose.append(line)
    return blocks, "".join(prose)


def _blocks(document: str, fence: str = "python") -> list[str]:
    return [body for info, body in _fenced(_text(document))[0] if info == fence]


def _prose(text: str) -> str:
    return _fenced(text)[1]


@pytest.fixture(scope="module")
def documented_examples(tmp_path_factory):
    """Every ```python block of the README and docs/, run in a fresh interpreter:
    (the blocks, the CompletedProcess, the working folder)."""
    folder = tmp_path_factory.mktemp("readme")
    blocks = [(document, block.replace("configs/", str(ROOT / "configs") + "/"))
              for document in (README, *DOCS) for block in _blocks(document)]
    (folder / "blocks.json").write_text(json.dumps(blocks))
    result = subprocess.run([sys.executable, "-c", RUN_BLOCKS, str(folder / "blocks.json")],
                            capture_output=True, text=True, timeout=600, cwd=folder,
                            env=command_env(), stdin=subprocess.DEVNULL)
    return blocks, result, folder


def test_documented_examples_run(documented_examples):
    blocks, result, folder = documented_examples
    assert sum(document == README for document, _ in blocks) >= 2
    assert result.returncode == 0, result.stderr[-4000:]
    assert (folder / "my_model.keras").is_file()


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_documented_import_works(document):
    imports = [node for fence in ("python", "py") for block in _blocks(document, fence)
               for node in ast.parse(block).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    if document in SHOW_IMPORTS:
        assert imports, f"{document} shows no imports any more: update SHOW_IMPORTS"
    for node in imports:
        exec(compile(ast.Module([node], type_ignores=[]), document, "exec"), {})


def test_readme_is_short():
    lines = len(_text(README).splitlines())
    assert lines < MAX_README_LINES, (
        f"README.md has {lines} lines; keep it under {MAX_README_LINES} and move details "
        "to a page in docs/ that it links")


def _anchors(document: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors, seen = set(), {}
    for heading in re.findall(r"^#+ (.+?)\s*$", _prose(document.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(document: str) -> list[str]:
    prose = re.sub(r"`[^`\n]*`", "", _prose(_text(document)))
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", prose)


@pytest.mark.parametrize("document", [README, *DOCS])
def test_relative_links_point_at_files(document):
    links = [link for link in _links(document) if not re.match(r"[a-z]+:", link)]
    if document == README:
        assert any(link.startswith("docs/") for link in links)
    for link in links:
        path, _, anchor = link.partition("#")
        target = (ROOT / document).parent / path if path else ROOT / document
        assert target.exists(), f"{document}: the link {link!r} points at nothing"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), (
                f"{document}: {link!r}: {target.name} has no heading with that anchor")


def test_readme_links_every_page_of_docs():
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in _links(README)}
    for page in DOCS:
        assert (ROOT / page).resolve() in linked, f"README.md does not link {page}"


@pytest.mark.parametrize("document", [README, *DOCS])
def test_package_paths_exist(document):
    for path in PACKAGE_PATH.findall(_text(document)):
        assert (ROOT / path).exists(), f"{document} names {path}, which does not exist"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every long option of a parser and of its subcommands."""
    options = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                options |= _options(subparser)
        else:
            options |= {name for name in action.option_strings
                        if name.startswith("--") and name != "--help"}
    return options


def _console_commands() -> list[tuple[str, str]]:
    """(command, module in spade_cli) of every console script."""
    try:
        from spade_cli.commands import COMMANDS
    except ImportError:  # the table is still in setup.py
        return CONSOLE_SCRIPT.findall((ROOT / "setup.py").read_text())
    return [(name, target.partition(":")[0].removeprefix("spade_cli."))
            for name, target in COMMANDS.items()]


COMMANDS = _console_commands()


def test_console_scripts_found():
    assert len(COMMANDS) >= 7, COMMANDS


@pytest.mark.parametrize(("tool", "module"), COMMANDS)
def test_every_command_and_option_is_documented(tool, module):
    """Each console command is shown in the README, and each of its options is named in
    the README or in docs/."""
    shown = [line for body in _blocks(README, "") for line in body.splitlines()]
    assert any(line.startswith(f"{tool} ") for line in shown), f"README.md shows no {tool}"
    documented = "\n".join(_text(document) for document in (README, *DOCS))
    parser = importlib.import_module(f"spade_cli.{module}").build_parser()
    missing = sorted(option for option in _options(parser)
                     if not re.search(rf"{re.escape(option)}(?![\w-])", documented))
    assert not missing, f"{tool}: options documented nowhere in README.md or docs/: {missing}"


def _shown_commands(document: str) -> list[tuple[str, str]]:
    """(command, the whole command line, continuations joined) of every command line in
    the document's plain code blocks."""
    shown = []
    for body in _blocks(document, "") + _blocks(document, "sh"):
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            tool = line.split(" ", 1)[0]
            if tool.startswith("spade-"):
                shown.append((tool, line.split("#", 1)[0]))
    return shown


@pytest.mark.parametrize("document", [README, *DOCS])
def test_shown_options_exist(document):
    """Every option a shown command line uses is one the command has."""
    parsers = {tool: importlib.import_module(f"spade_cli.{module}").build_parser()
               for tool, module in COMMANDS}
    for tool, line in _shown_commands(document):
        assert tool in parsers, f"{document} shows {tool}, which is no console command"
        unknown = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", line)) - _options(parsers[tool])
        assert not unknown, f"{document}: {line.strip()!r} uses {sorted(unknown)}"
