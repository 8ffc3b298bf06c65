"""Helpers the tests share (the test files themselves mirror the packages).

- ``contract``: the Keras contract every layer and network honours;
- ``processes``: run test code in a fresh Python process;
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
    ``make test`` (``SPADE_TF_REQUIRE_TORCH=1``, torch installed) a missing torch fails."""
    if os.environ.get("SPADE_TF_REQUIRE_TORCH") == "1":
        import torch

        return torch
    return pytest.importorskip("torch")
