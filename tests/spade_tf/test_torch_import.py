"""PyTorch beside TensorFlow (spade_tf.torch_import): Triton never loads after TensorFlow.

PyPI's torch brings triton, and ``import tensorflow; import triton`` dies with a
segmentation fault (two LLVMs in one process); torch imports triton lazily, e.g. on the
first ``torch.optim.Adam``. Here (a CPU torch without triton) a stand-in ``triton`` package
on the path crashes the same way when imported after TensorFlow, and each way this project
imports torch -- the tests' ``import_torch``, the converter's (and VGG weights') reader,
the PyTorch reference and the training benchmark's PyTorch step, all through the rule --
runs an Adam step after TensorFlow without loading it. A control run (plain ``import torch``)
shows torch still reaches for triton, so the stand-in is exercised. A source scan keeps
every torch import going through the rule. ``scripts/check_pypi_torch.sh`` runs the
PyTorch-side tests with PyPI's real torch and triton.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest
from support import ROOT, import_torch
from support.processes import command_env

from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch()

CRASH = 139  # what the real crash exits with (SIGSEGV)
FAKE_TRITON = f"""
import os
import sys

if "tensorflow" in sys.modules:  # as the real libtriton.so does: two LLVMs, one process
    sys.stderr.write("stand-in triton imported after tensorflow\\n")
    sys.stderr.flush()
    os._exit({CRASH})
"""

ADAM_STEP = """
parameter = torch.nn.Parameter(torch.ones(3))
optimizer = torch.optim.Adam([parameter], lr=0.1)  # imports torch._dynamo -> triton
parameter.sum().backward()
optimizer.step()
"""

# How each place gets torch; each runs after `import tensorflow`, then takes an Adam step.
ENTRY_POINTS = {
    "tests": """
        from support import import_torch
        torch = import_torch()
    """,
    "converter": """
        from spade_tf.torch_state_dict import import_torch
        torch = import_torch()
    """,
    "reference": """
        from spade_tf.testing.torch_reference import layers
        torch = layers.torch
    """,
    "benchmark": """
        from benchmarks.training_step import _config, torch_step
        step, _, _ = torch_step(_config("demo", 64, "float32", False), "float32")
        step()
        import torch
    """,
    "control": """
        import torch  # the bare import this project no longer does
    """,
}


def _start(entry: str, fake_dir) -> subprocess.Popen:
    script = "\n".join([
        "import json, sys",
        "import tensorflow",
        textwrap.dedent(ENTRY_POINTS[entry]),
        ADAM_STEP,
        "import torch.utils._triton",
        "print(json.dumps({'triton': repr(sys.modules.get('triton', 'absent')),",
        "                  'has_triton': torch.utils._triton.has_triton_package()}))",
    ])
    env = command_env(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(
        [str(fake_dir), str(ROOT), str(ROOT / "tests")]))
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{entry point: (exit status, stdout, stderr)}, the processes run side by side."""
    fake_dir = tmp_path_factory.mktemp("fake_triton")
    (fake_dir / "triton").mkdir()
    (fake_dir / "triton" / "__init__.py").write_text(FAKE_TRITON)
    processes = {entry: _start(entry, fake_dir) for entry in ENTRY_POINTS}
    results = {}
    for entry, process in processes.items():
        try:
            stdout, stderr = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        results[entry] = (process.returncode, stdout, stderr)
    return results


def test_torch_still_imports_triton_lazily_so_the_stand_in_is_exercised(runs):
    status, _, stderr = runs["control"]
    assert status == CRASH and "stand-in triton imported after tensorflow" in stderr, (
        f"a plain `import torch` after TensorFlow no longer loads triton on the first Adam "
        f"step (exit {status}); if torch stopped importing it, this stand-in proves nothing: "
        f"see spade_tf/torch_import.py. stderr:\n{stderr[-3000:]}")


@pytest.mark.parametrize("entry", [name for name in ENTRY_POINTS if name != "control"])
def test_torch_beside_tensorflow_never_loads_triton(runs, entry):
    status, stdout, stderr = runs[entry]
    assert status == 0, f"{entry}: exit {status}\n{stderr[-4000:]}"
    assert json.loads(stdout.strip().splitlines()[-1]) == {"triton": "None",
                                                           "has_triton": False}


def test_in_this_process_triton_is_marked_unavailable():
    assert import_torch_beside_tensorflow() is torch
    if sys.modules.get("triton") is not None:  # imported before TensorFlow: left alone
        pytest.skip("triton was imported before the rule ran (and before TensorFlow)")
    assert "triton" in sys.modules and sys.modules["triton"] is None
    with pytest.raises(ImportError):
        import triton  # noqa: F401
    import importlib.util

    assert importlib.util.find_spec("triton") is None


def _torch_imports(path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name.split(".")[0] in ("torch", "triton") for name in names):
            lines.append(node.lineno)
    return lines


def test_every_torch_import_goes_through_the_rule():
    rule = ROOT / "spade_tf" / "torch_import.py"
    found = {}
    for folder in ("spade_tf", "spade_cli", "serving", "tfrecords_tools", "benchmarks",
                   "scripts", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == rule or path == ROOT / "tests" / "spade_tf" / "test_torch_import.py":
                continue
            lines = _torch_imports(path)
            if lines:
                found[str(path.relative_to(ROOT))] = lines
    assert not found, (
        "these import torch (or triton) directly; PyPI's torch then loads triton after "
        "TensorFlow and crashes. Use spade_tf.torch_import.import_torch_beside_tensorflow() "
        f"(tests: support.import_torch()): {found}")
