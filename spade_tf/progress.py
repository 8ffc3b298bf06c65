"""Progress of long work in the commands' one-line style: ``<what> done/total``.

One class for every command (``spade-synthesize``, ``spade-eval``, ``spade-tfrecords``;
``spade-train`` shows Keras's own bar, see :mod:`spade_tf.training.progress`). On a
terminal the line is redrawn in place (carriage return) a few times a second and ends with
a newline when the work is done; in a log file or a pipe a fresh line is written at most
every ``interval`` seconds, so a long run stays a short log. The last count is always
written. TensorFlow-free.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

# Seconds between redraws of an in-place line on a terminal.
TERMINAL_INTERVAL = 0.2


class ProgressLine:
    """``<what> done/total`` (``?`` for an unknown total), optionally with a rate
    (``(3.1 images/s)``), written to ``stream`` or handed to ``write``.

    ``write`` (a callable taking one line) is for commands that prefix or collect their
    messages; lines given to it are never redrawn in place.
    """

    def __init__(self, what: str, total: int | None = None, interval: float = 2.0,
                 rate_unit: str | None = None, stream: TextIO | None = None,
                 write: Callable[[str], None] | None = None):
        self.what, self.total, self.interval, self.rate_unit = what, total, interval, rate_unit
        self.stream = stream if stream is not None else sys.stderr
        self.write = write
        self.in_place = write is None and _is_terminal(self.stream)
        self.started = time.monotonic()
        self.last: float | None = None

    def update(self, done: int, total: int | None = None, seconds: float | None = None) -> None:
        """Report ``done`` items (of ``total``, if it changed); ``seconds`` is the time the
        rate is computed over (default: since this line was created)."""
        if total is not None:
            self.total = total
        now = time.monotonic()
        finished = self.total is not None and done >= self.total
        interval = TERMINAL_INTERVAL if self.in_place else self.interval
        if not finished and self.last is not None and now - self.last < interval:
            return
        self.last = now
        line = f"{self.what} {done}/{'?' if self.total is None else self.total}"
        if self.rate_unit is not None:
            elapsed = now - self.started if seconds is None else seconds
            line += f" ({done / elapsed if elapsed > 0 else 0.0:.1f} {self.rate_unit}/s)"
        if self.write is not None:
            self.write(line)
        elif self.in_place:
            print("\r" + line, end="\n" if finished else "", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
