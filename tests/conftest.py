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


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """``exports(kind)``: the session's export of a kind of support.exports.KINDS (made by
    the first test that asks, shared by the xdist workers); read-only."""
    from support.exports import Exports, shared_root

    return Exports(shared_root(tmp_path_factory) / "exports")
