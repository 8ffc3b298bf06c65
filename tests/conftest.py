"""Test set-up: quiet TensorFlow, deterministic seeds, shared fixtures."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Test files import the shared helpers as ``support.<module>``.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from support import ROOT  # noqa: E402
from support.background import RUNS, BackgroundRuns, checks_a_background_run  # noqa: E402


def pytest_collection_modifyitems(items):
    # The tests of background runs go last: by then their runs are done.
    items.sort(key=checks_a_background_run)


@pytest.fixture(scope="session")
def background_runs(request, tmp_path_factory):
    """The background runs the collected tests check (support/background.py), started."""
    wanted = {name for item in request.session.items for name in item.fixturenames}
    runs = BackgroundRuns([name for name in RUNS if name in wanted], tmp_path_factory)
    yield runs
    runs.close()


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
