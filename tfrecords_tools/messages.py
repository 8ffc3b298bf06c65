"""How a conversion talks to its user: the reporter, counted words, and why it stopped."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from spade_tf.errors import SpadeError

#: Takes one line of progress or news (the command line prints it to stderr).
Reporter = Callable[[str], None]


def stderr_reporter(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class ConversionFailed(SpadeError, RuntimeError):
    """The conversion stopped; the message summarizes why (and lists bad pairs).

    ``details`` (the bad pairs, one per line) and ``short`` (one line) let a command-line
    tool print the list first and end with a single error line.
    """

    def __init__(self, message: str, details: Sequence[str] = (), short: str | None = None):
        super().__init__(message)
        self.details = tuple(details)
        self.short = short or message


class ConversionInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the conversion; the message says what was kept and how to go on."""
