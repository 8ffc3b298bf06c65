"""Test set-up: quiet TensorFlow, deterministic seeds, shared fixtures."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Test files import the shared helpers as ``support.<module>``.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from support import ROOT  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    """Fix numpy and Keras seeds per test so every test is reproducible on its own."""
    import keras
    import numpy as np

    np.random.seed(1234)
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def configs_dir() -> Path:
    return ROOT / "configs"
