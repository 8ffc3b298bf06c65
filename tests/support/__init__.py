"""Helpers the tests share (the test files themselves mirror the packages).

- ``contract``: the Keras contract every layer and network honours;
- ``processes``: run test code in a fresh Python process;
- ``runs``: long runs of scripts and commands as session fixtures;
- ``exports``: the session's tiny exports, shared by the xdist workers, and one process
  that loads them as TF Serving does;
- ``models``: model folders of random networks;
- ``synthetic_data``: a small synthetic dataset and its TFRecords;
- ``reference_checkpoints``: tiny randomised PyTorch reference networks and their config;
- ``scores``: an independent mIoU computation;
- ``one_step_worker.py``, ``kill_during_training.py``: scripts the training tests run.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


def import_torch():
    """PyTorch, or a skip where it is not installed (the optional ``[convert]`` extra); under
    ``make test`` (``SPADE_TF_REQUIRE_TORCH=1``, torch installed) a missing torch fails.

    Imported with Triton kept out (``spade_tf.torch_import``): the tests run PyTorch beside
    TensorFlow, and PyPI's torch would otherwise load triton after TensorFlow and crash."""
    from spade_tf.torch_import import import_torch_beside_tensorflow

    if os.environ.get("SPADE_TF_REQUIRE_TORCH") == "1":
        return import_torch_beside_tensorflow()
    try:
        return import_torch_beside_tensorflow()
    except ImportError as error:
        pytest.skip(f"could not import 'torch': {error}", allow_module_level=True)
