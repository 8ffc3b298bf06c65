"""The README's Python examples run as written; every import in the docs works."""

import ast
import re

import pytest
from support import ROOT

DOCUMENTS = ["README.md", "docs/evaluation.md", "serving/deploy/README.md"]


def _blocks(document: str, fence: str = "python") -> list[str]:
    return re.findall(rf"```{fence}\n(.*?)```", (ROOT / document).read_text(), re.S)


def test_readme_examples_run(tmp_path, monkeypatch):
    """The ```python blocks (```py blocks need a running server and are not run)."""
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("README.md")
    assert len(blocks) >= 2
    for block in blocks:
        namespace: dict = {}
        exec(compile(block.replace("configs/", str(ROOT / "configs") + "/"), "README", "exec"),
             namespace)
    assert (tmp_path / "my_model.keras").is_file()


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_documented_import_works(document):
    imports = [node for fence in ("python", "py") for block in _blocks(document, fence)
               for node in ast.parse(block).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    if document != "serving/deploy/README.md":
        assert imports, f"{document} shows no imports any more: update DOCUMENTS"
    for node in imports:
        exec(compile(ast.Module([node], type_ignores=[]), document, "exec"), {})
