"""The skeleton every console script runs on: parse, quiet TensorFlow, run, map errors.

- A :class:`~spade_tf.errors.SpadeError` (bad input, settings or files) prints
  ``PROG: error: MESSAGE`` on one line and exits with its status (2), no traceback.
- Ctrl-C (KeyboardInterrupt) prints ``PROG: interrupted`` and exits with 130.
- Anything else is a bug: its traceback is printed as usual.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from spade_cli.quiet import VERBOSE_ENV, quiet_tensorflow
from spade_tf.errors import SpadeError

VERBOSE_NOTE = f"TensorFlow's own log lines are hidden; {VERBOSE_ENV}=1 shows them."

Command = Callable[[argparse.Namespace], "int | None"]


class UsageError(SpadeError):
    """A problem a command finds in its own arguments (a file it cannot read, a clash)."""


def command_name(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``spade-eval fid`` for a subcommand, else the program name."""
    subcommand = getattr(args, "command", None)
    return f"{parser.prog} {subcommand}" if subcommand else parser.prog


def run(parser: argparse.ArgumentParser, command: Command, argv: list[str] | None = None,
        uses_tensorflow: Callable[[argparse.Namespace], bool] = lambda args: True) -> int:
    """Parse ``argv`` (default: the command line), run ``command(args)``; the exit status.

    TensorFlow is imported here, quietly, when ``uses_tensorflow(args)``; commands that
    never need it (``spade-eval synthetic``) skip the seconds it takes.
    """
    args = parser.parse_args(argv)
    name = command_name(parser, args)
    try:
        quiet_tensorflow(import_tensorflow=uses_tensorflow(args))
        status = command(args)
    except SpadeError as error:
        label = f"{error.label}: " if error.label else ""
        print(f"{name}: {label}{error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else status


def new_parser(prog: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    """A parser whose epilog (the examples) keeps its line breaks."""
    epilog = f"{epilog}\n{VERBOSE_NOTE}" if epilog else VERBOSE_NOTE
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
