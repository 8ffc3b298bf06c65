"""ProgressLine: in place on a terminal, throttled lines in a pipe, the last always written.

The clock is injected (``spade_tf.progress.time``): nothing here sleeps.
"""

import io
import types

import pytest

from spade_tf import progress
from spade_tf.progress import TERMINAL_INTERVAL, ProgressLine


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=clock))
    return clock


def stream(terminal: bool) -> io.StringIO:
    out = io.StringIO()
    out.isatty = lambda: terminal
    return out


def test_in_a_pipe_a_line_per_interval_and_the_last_always(clock):
    out = stream(terminal=False)
    line = ProgressLine("written shards", 10, interval=2.0, stream=out)
    assert not line.in_place
    line.update(1)  # the first is written at once
    clock.now += 1.9
    line.update(2)  # within the interval: skipped
    clock.now += 0.1
    line.update(3)
    clock.now += 0.5
    line.update(10)  # the last, although within the interval
    assert out.getvalue() == "written shards 1/10\nwritten shards 3/10\nwritten shards 10/10\n"


def test_on_a_terminal_one_line_redrawn_and_ended_when_done(clock):
    out = stream(terminal=True)
    line = ProgressLine("synthesized", 4, interval=60.0, rate_unit="images", stream=out)
    assert line.in_place
    line.update(1, seconds=0.5)
    clock.now += TERMINAL_INTERVAL / 2
    line.update(2, seconds=1.0)  # redrawn at most every TERMINAL_INTERVAL, not every interval
    clock.now += TERMINAL_INTERVAL
    line.update(3, seconds=1.0)
    line.update(4, seconds=2.0)
    assert out.getvalue() == ("\rsynthesized 1/4 (2.0 images/s)"
                              "\rsynthesized 3/4 (3.0 images/s)"
                              "\rsynthesized 4/4 (2.0 images/s)\n")


def test_a_write_callable_gets_whole_lines_even_on_a_terminal(clock):
    lines = []
    out = stream(terminal=True)
    line = ProgressLine("spade-eval: real", 20, interval=10.0, stream=out, write=lines.append)
    assert not line.in_place
    line.update(8)
    clock.now += 9.9
    line.update(16)
    clock.now += 0.1
    line.update(18)
    line.update(20)
    assert lines == ["spade-eval: real 8/20", "spade-eval: real 18/20", "spade-eval: real 20/20"]
    assert out.getvalue() == ""


def test_unknown_total_rate_since_creation_and_a_total_learned_later(clock):
    out = stream(terminal=False)
    line = ProgressLine("checked pairs", interval=1.0, rate_unit="pairs", stream=out)
    clock.now += 2.0
    line.update(5)  # no total: never "done", throttled as any other line
    clock.now += 0.5
    line.update(6)
    line.update(8, total=8)  # now known: the last, written at once
    assert out.getvalue() == "checked pairs 5/? (2.5 pairs/s)\nchecked pairs 8/8 (3.2 pairs/s)\n"


def test_a_stream_without_a_working_isatty_is_not_a_terminal(clock):
    closed = io.StringIO()
    closed.close()
    assert not ProgressLine("x", stream=closed).in_place
    assert not ProgressLine("x", stream=object()).in_place


def test_the_default_stream_is_stderr(clock, capsys):
    ProgressLine("images", 1).update(1)
    assert capsys.readouterr() == ("", "images 1/1\n")
