"""Long self-contained runs (a script, or a few processes, a minute or more) as session
fixtures.

``@session_run`` on ``run(folder, processes)`` declares one: it returns the session
fixture, named after ``run``, that does the work in a fresh temporary ``folder`` with
processes started by ``processes`` (killed, children too, if still running when the run
ends) and gives what ``run`` returned; the tests that check the run take that fixture.

Nothing is scheduled here: under ``make test`` pytest-xdist runs the tests on two workers,
so a run's processes use one core while the other worker's tests use the other. A run
starts when the first test that needs it does, and its tests pass or fail in any order.

A run does nothing in-process that touches global state (no Keras, no random seeds): it
reads and writes files and starts processes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from support.processes import Processes


def session_run(run: Callable[[Path, Processes], object]):
    """The session fixture named after ``run`` that gives ``run``'s result."""

    @pytest.fixture(scope="session", name=run.__name__)
    def result(tmp_path_factory):
        processes = Processes()
        try:
            return run(tmp_path_factory.mktemp(run.__name__), processes)
        finally:
            processes.close()

    result.__doc__ = run.__doc__
    return result
