"""The README's Python examples run as written."""

import re

from conftest import ROOT


def _python_blocks() -> list[str]:
    """The ```python blocks (```py blocks need a running server and are not run)."""
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        namespace: dict = {}
        exec(compile(block.replace("configs/", str(ROOT / "configs") + "/"), "README", "exec"),
             namespace)
    assert (tmp_path / "my_model.keras").is_file()
