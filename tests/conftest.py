"""Test set-up: quiet TensorFlow, deterministic seeds, shared fixtures."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import pytest  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"


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
