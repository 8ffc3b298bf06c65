"""The README's Python examples run as written; every import in the docs works."""

import ast
import json
import re
import sys

import pytest
from support import ROOT
from support.background import background_run
from support.processes import command_env

DOCUMENTS = ["README.md", "docs/evaluation.md", "serving/deploy/README.md"]
# Each block in a namespace of its own, in the working folder, as a reader would run them.
RUN_BLOCKS = """
import json, sys
for block in json.load(open(sys.argv[1])):
    exec(compile(block, "README", "exec"), {})
"""


def _blocks(document: str, fence: str = "python") -> list[str]:
    return re.findall(rf"```{fence}\n(.*?)```", (ROOT / document).read_text(), re.S)


@background_run
def readme_examples(folder, processes):
    """The ```python blocks (```py blocks need a running server and are not run), run in
    a fresh interpreter in ``folder``: (the blocks, the CompletedProcess, folder)."""
    blocks = [block.replace("configs/", str(ROOT / "configs") + "/")
              for block in _blocks("README.md")]
    (folder / "blocks.json").write_text(json.dumps(blocks))
    result = processes.run([sys.executable, "-c", RUN_BLOCKS, str(folder / "blocks.json")],
                           timeout=600, cwd=folder, env=command_env())
    return blocks, result, folder


def test_readme_examples_run(readme_examples):
    blocks, result, folder = readme_examples
    assert len(blocks) >= 2
    assert result.returncode == 0, result.stderr[-4000:]
    assert (folder / "my_model.keras").is_file()


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_documented_import_works(document):
    imports = [node for fence in ("python", "py") for block in _blocks(document, fence)
               for node in ast.parse(block).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    if document != "serving/deploy/README.md":
        assert imports, f"{document} shows no imports any more: update DOCUMENTS"
    for node in imports:
        exec(compile(ast.Module([node], type_ignores=[]), document, "exec"), {})
