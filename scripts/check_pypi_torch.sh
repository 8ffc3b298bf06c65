#!/usr/bin/env bash
# PyTorch from PyPI beside TensorFlow: the PyTorch-side tests and the training benchmark's
# PyTorch worker, run with PyPI's torch (the CUDA build, which brings triton).
#
# Why: PyPI serves Linux users torch 2.x+cuXXX, which depends on triton; `import tensorflow;
# import triton` dies with a segmentation fault (libtriton.so's LLVM binds to the LLVM
# symbols TensorFlow's libtensorflow_framework.so.2 exports), and torch imports triton
# lazily (torch.optim -> torch._dynamo). spade_tf/torch_import.py keeps triton out of
# every process that runs PyTorch beside TensorFlow; this script proves it with the real
# wheels. The default suite proves the mechanism with a stand-in triton
# (tests/spade_tf/test_torch_import.py); this machine's own venv has the CPU wheel.
#
# The venv (a few GB: torch, triton and the nvidia-* wheels; .cache is git-ignored). Name
# PyPI explicitly: this machine's pip config may point at a local CPU wheel index.
#
#   python3.11 -m venv .cache/pypi-torch-venv
#   .cache/pypi-torch-venv/bin/pip install --index-url https://pypi.org/simple torch
#   .cache/pypi-torch-venv/bin/pip install --index-url https://pypi.org/simple -e '.[test,convert]'
#
# Usage (from anywhere; no GPU needed, everything runs on the CPU):
#
#   scripts/check_pypi_torch.sh [VENV] [-- extra pytest arguments]
#
# VENV defaults to .cache/pypi-torch-venv. Steps, each must pass:
#   1. versions: torch is not a +cpu build and has triton;
#   2. the crash itself, in a child process: `import tensorflow; import triton` must still
#      crash (else this check proves nothing and can go);
#   3. the PyTorch-side tests: every test file that calls support.import_torch (and the
#      converter tests, whose conftest does), test_reference_step.py's Adam run included;
#   4. benchmarks/training_step.py's PyTorch worker on the demo case, float32 and bfloat16.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.cache/pypi-torch-venv"
if [[ $# -gt 0 && "$1" != -* ]]; then
    VENV="$1"
    shift
fi
if [[ "${1:-}" == "--" ]]; then
    shift
fi
PYTHON="$VENV/bin/python"
cd "$ROOT"
export TF_CPP_MIN_LOG_LEVEL=3 SPADE_TF_REQUIRE_TORCH=1

if [[ ! -x "$PYTHON" ]]; then
    echo "no Python at $PYTHON: build the venv as the top of $0 says" >&2
    exit 2
fi

echo "== 1. versions ($VENV)"
# triton's version from its metadata: importing it is what step 2 is about.
"$PYTHON" - <<'EOF'
import importlib.metadata as metadata
import sys

import torch

versions = {name: metadata.version(name) for name in ("torch", "triton", "tensorflow", "keras")}
print("python", sys.version.split()[0], "|", " | ".join(f"{k} {v}" for k, v in versions.items()))
print("torch.__version__", torch.__version__, "| CUDA build:", torch.version.cuda)
assert "+cpu" not in torch.__version__, f"{torch.__version__} is the CPU wheel, not PyPI's"
EOF

echo "== 2. the crash the fix avoids: import tensorflow; import triton (expected: SIGSEGV)"
set +e
"$PYTHON" -c "import tensorflow; import triton" >/dev/null 2>&1
status=$?
set -e
if [[ $status -ne 139 ]]; then
    echo "exit $status, not 139 (segmentation fault): these wheels no longer crash, the check" \
         "proves nothing; see spade_tf/torch_import.py" >&2
    exit 1
fi
echo "exit 139 (segmentation fault), as reported"

echo "== 3. the PyTorch-side tests"
mapfile -t TESTS < <(
    { grep -rl --include='test_*.py' 'import_torch' tests
      for conftest in $(grep -rl --include=conftest.py '^torch = import_torch()' tests); do
          find "$(dirname "$conftest")" -name 'test_*.py'
      done; } | sort -u)
printf '   %s\n' "${TESTS[@]}"
"$PYTHON" -m pytest -p no:cacheprovider -q --disable-warnings "${TESTS[@]}" "$@"
echo "-- again, the issue's command alone: test_reference_step.py -k adam"
"$PYTHON" -m pytest -p no:cacheprovider -q --disable-warnings \
    tests/spade_tf/training/test_reference_step.py -k adam "$@"

echo "== 4. benchmarks/training_step.py, PyTorch worker, demo case"
"$PYTHON" benchmarks/training_step.py --cases demo --frameworks torch \
    --precisions float32 mixed_bfloat16 --repeats 2 --warmup 1 --quiet-wait 0

echo "== all passed with $("$PYTHON" -c 'import importlib.metadata as m; print("torch", m.version("torch"), "triton", m.version("triton"))')"
