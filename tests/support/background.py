"""Long self-contained runs, started in the background and checked by their tests at the end.

A background run is a script or a few processes that take a minute or more and keep about
one core busy (the GPU benchmark's CPU mode, the demo, the distributed equivalence steps).
One after another in the foreground they add up to minutes; here they use the machine's
second core, which the in-process tests (tracing, mostly one core) leave idle.

- a test module declares one with ``@background_run``: ``run(folder, processes)`` does the
  work in ``folder`` with processes started by ``processes`` and returns what its tests
  check; they receive it as the fixture of the same name (its error, if it raised);
- the runs of the collected tests start with the first test under tests/spade_tf
  (tests/spade_tf/conftest.py), after the serving and command-line tests, whose timing
  checks must not share the CPU; or when a test first needs one;
- they run one at a time, so the in-process tests keep a core; the tests that check them
  go last (tests/conftest.py), by when they are done.

A run does nothing in-process that touches global state (no Keras, no random seeds): it
reads and writes files and starts processes.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support.processes import Processes

RUNS: dict[str, Callable[[Path, Processes], object]] = {}


def background_run(run: Callable[[Path, Processes], object]):
    """Declare ``run`` a background run; returns the session fixture, named after it, that
    gives its result."""
    RUNS[run.__name__] = run

    @pytest.fixture(scope="session", name=run.__name__)
    def result(background_runs):
        return background_runs.result(run.__name__)

    result.__doc__ = run.__doc__
    return result


def checks_a_background_run(item: pytest.Item) -> bool:
    return any(name in RUNS for name in item.fixturenames)


class BackgroundRuns:
    """The runs called ``names``, started one after another in a background thread."""

    def __init__(self, names: list[str], tmp_path_factory: pytest.TempPathFactory):
        self.processes = Processes()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="background-run")
        self._results = {name: self._executor.submit(RUNS[name], tmp_path_factory.mktemp(name),
                                                     self.processes)
                         for name in names}

    def result(self, name: str):
        return self._results[name].result()

    def close(self) -> None:
        self.processes.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
