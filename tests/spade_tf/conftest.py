"""The background runs (tests/support/background.py) start with the first test here."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _start_background_runs(background_runs):
    # Not earlier: the serving and command-line tests before these check timings that a
    # run sharing the CPU could upset.
    yield
