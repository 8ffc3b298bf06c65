"""Importing PyTorch into a process that runs TensorFlow: ``import_torch_beside_tensorflow()``.

Why. PyPI's Linux torch (the CUDA build, e.g. 2.14.1+cu130) depends on ``triton``, whose
``libtriton.so`` carries its own LLVM/MLIR. TensorFlow's ``libtensorflow_framework.so.2``
exports its LLVM/MLIR symbols, and once TensorFlow is loaded, loading ``libtriton.so``
binds thousands of libtriton's LLVM references to TensorFlow's copies of another LLVM
version: libtriton's static initialisers (``llvm::DebugCounter`` in its PassBuilder) then
corrupt the heap and the process dies with a segmentation fault::

    python -c "import tensorflow; import triton"   # crashes (torch not even needed)
    python -c "import triton; import tensorflow"   # works

torch imports triton lazily, not on ``import torch``: ``torch.optim``'s optimizers import
``torch._dynamo`` (``torch._disable_dynamo``), whose ``utils`` module calls
``torch.utils._triton.has_triton_package()`` -- ``import triton`` -- at import. So the
first ``torch.optim.Adam(...)`` (or ``torch.compile``) after ``import tensorflow``
crashed; the CPU wheels (``+cpu``) have no triton and never did.

The rule. Importing triton before TensorFlow cannot be guaranteed here: ``import
spade_tf`` imports TensorFlow, pytest imports TensorFlow-using test files before others,
workers configure TensorFlow's devices first. So PyTorch used beside TensorFlow runs
without Triton: unless triton is already imported, ``sys.modules["triton"]`` is set to
``None``, which makes ``import triton`` raise ImportError and
``importlib.util.find_spec("triton")`` answer None -- both of which torch reads as
"Triton is not installed". Nothing here needs Triton: it only compiles GPU kernels for
``torch.compile``/inductor (unused: the reference networks run eagerly, on CPU and GPU
alike) and a few optional kernel overrides that fall back to ATen. The rule holds
whatever was imported first, so every build of torch behaves the same.

Every module of this project that imports torch does it through this function (the
package, the converter, the tests' ``support.import_torch``, the test workers and the
benchmarks); ``tests/spade_tf/test_torch_import.py`` holds that in place, and
``scripts/check_pypi_torch.sh`` runs the PyTorch-side tests with PyPI's torch.
"""

from __future__ import annotations

import sys

TRITON = "triton"


def import_torch_beside_tensorflow():
    """The ``torch`` module, with Triton kept out of the process (see the module docstring).

    Raises ImportError where torch is not installed, as ``import torch`` does. A triton
    imported already (necessarily before TensorFlow, or the process would have crashed)
    is left alone.
    """
    sys.modules.setdefault(TRITON, None)
    import torch

    return torch
