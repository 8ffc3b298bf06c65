"""A Ctrl-C that Python swallows in a callback (a gc callback such as the one JAX installs,
which TensorFlow imports where JAX is installed; a ``__del__``) reaches the command after
all: spade_cli.quiet.redeliver_swallowed_interrupts, which every command's run installs."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from spade_cli import quiet


class _RaisesWhenDropped:
    def __init__(self, error: type[BaseException]):
        self.error = error

    def __del__(self):
        raise self.error("raised where Python cannot raise")


@pytest.fixture
def hooks(monkeypatch):
    """The unraisable errors the hook before ours received; Python's own Ctrl-C handler."""
    received = []
    monkeypatch.setattr(sys, "unraisablehook", received.append)
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield received
    signal.signal(signal.SIGINT, previous_handler)


def _wait_for_the_main_thread(seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_swallowed_ctrl_c_is_raised_in_the_main_thread(hooks):
    quiet.redeliver_swallowed_interrupts()
    with pytest.raises(KeyboardInterrupt):
        _RaisesWhenDropped(KeyboardInterrupt)  # dropped at once: its __del__ raises
        _wait_for_the_main_thread()
    assert hooks == []  # not reported as "Exception ignored" either


def test_other_unraisable_errors_go_to_the_previous_hook_once(hooks):
    quiet.redeliver_swallowed_interrupts()
    installed = sys.unraisablehook
    quiet.redeliver_swallowed_interrupts()  # idempotent: not wrapped twice
    assert sys.unraisablehook is installed
    _RaisesWhenDropped(ValueError)
    assert [type(unraisable.exc_value) for unraisable in hooks] == [ValueError]
