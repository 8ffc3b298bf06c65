"""The conversion's worker processes, and Ctrl-C around them.

Workers ignore Ctrl-C: the parent decides (no traceback per worker). On an interruption or
an error the queued work is dropped and the workers finish the item in hand and exit.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import signal
from collections.abc import Iterator


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is the parent's to handle, so no traceback per worker.

    Workers start with SIGINT blocked (see :func:`_sigint_blocked`), so one that arrives
    while a worker is still importing waits here and is then discarded.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    # Child processes inherit the signal mask; the parent still gets Ctrl-C (Python runs
    # its handler in the main thread whichever thread the signal reached).
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _InlineExecutor(concurrent.futures.Executor):
    """Runs in the calling process: for --workers 1 and for debugging."""

    def map(self, fn, *iterables, **kwargs):
        return map(fn, *iterables)


@contextlib.contextmanager
def pool(workers: int) -> Iterator[concurrent.futures.Executor]:
    """``workers`` processes (the calling process itself for 1 or fewer)."""
    if workers <= 1:
        yield _InlineExecutor()
        return
    # Spawned workers import only Pillow and numpy, never the parent's TensorFlow state.
    context = multiprocessing.get_context("spawn")
    executor = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                      initializer=_ignore_sigint)
    try:
        yield executor
    except BaseException:
        # Drop the queued work; the workers finish the item in hand and exit.
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def ordered_map(executor: concurrent.futures.Executor, fn, items: list, rule,
                chunksize: int) -> Iterator:
    """``fn(item, rule)`` for each item, in order."""
    # Submitting starts the worker processes: they must not inherit a live Ctrl-C.
    with _sigint_blocked():
        return executor.map(fn, items, [rule] * len(items), chunksize=chunksize)
