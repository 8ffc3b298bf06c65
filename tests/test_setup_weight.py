"""What `make demo` and `make test` install, read from make's own dry run: the demo needs
only the package and its runtime (no PyTorch, no test tools); the tests need both."""

import shutil
import subprocess

import pytest
from support import ROOT


def _dry_run(target: str, venv) -> str:
    result = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_only_the_runtime_and_make_test_adds_the_rest(tmp_path):
    demo = _dry_run("demo", tmp_path / "venv")
    assert 'pip install --quiet -e .' in demo and "scripts/demo.py" in demo
    assert "torch" not in demo and "[test" not in demo
    test = _dry_run("test", tmp_path / "venv")
    assert '"torch==' in test and '-e ".[test,convert]"' in test and "pytest" in test
