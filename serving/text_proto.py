"""TF Serving's config files (models.config, batching parameters, monitoring config):
text-format protobuf messages read with protobuf's own parser. Every failure is one line
that names the file (and the line), what is wrong and what to write instead."""

from __future__ import annotations

import os
import re
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import Message

# protobuf's messages start with "LINE:COLUMN : ", which the error puts after the path.
_POSITION = re.compile(r"^\d+:\d+ : ")


def read_text_proto(path: str | os.PathLike, message: Message, what: str, example: str,
                    error: type[Exception]) -> Message:
    """Parse the file at ``path`` into ``message`` (returned).

    ``what`` names the file in messages ("model config file"); ``example`` says what a good
    one holds; ``error`` is the exception raised, with one line naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{what} {path} does not exist: give the path of a text-format "
                    f"{message.DESCRIPTOR.name} ({example}).")
    if path.is_dir():
        raise error(f"{what} {path} is a folder: give the file itself ({example}).")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as problem:
        raise error(f"{what} {path} cannot be read ({problem}): make it a readable UTF-8 "
                    "text file.") from None
    return parse_text_proto(text, message, str(path), example, error)


def parse_text_proto(text: str, message: Message, source: str, example: str,
                     error: type[Exception]) -> Message:
    """Parse ``text`` into ``message`` (returned); a syntax error is ``error`` naming
    ``source`` and the line and column."""
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as problem:
        line, column = problem.GetLine(), problem.GetColumn()
        where = f"{source}:{line}:{column}" if line is not None else source
        detail = _POSITION.sub("", str(problem)).rstrip(".")
        raise error(f"{where}: not a text-format {message.DESCRIPTOR.name}: {detail}; fix "
                    f"that line ({example}).") from None
