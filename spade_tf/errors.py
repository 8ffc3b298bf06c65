"""The base of every error a user can fix (no TensorFlow: the command-line tools import it).

Each package raises its own subclass (``ConfigError``, ``DataError``, ``ExportError`` ...)
with a message that says what was received, what was expected and what to do. The
command-line tools print such an error as one line, ``PROG: error: MESSAGE``, and exit
with ``exit_status``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re


class SpadeError(Exception):
    """A problem with the user's input, files or settings; the message explains the fix."""

    #: Exit status of a command-line tool stopped by this error.
    exit_status = 2
    #: The word before the message: ``PROG: error: ...`` (None: ``PROG: MESSAGE``).
    label: str | None = "error"


class Interrupted(SpadeError):
    """Stopped on request (Ctrl-C, SIGTERM) with the work so far kept; the message says
    where it stopped and how to go on."""

    exit_status = 130
    label = None


def readable_tf_message(message: str) -> str:
    """A TensorFlow error message without the graph internals users cannot act on.

    ``{{function_node __wrapped__...}} assertion failed: [label ids must be in 0..7; found
    id] [9] [[{{node check_label_ids/Assert}}]] [Op:IteratorGetNext] name:`` becomes
    ``label ids must be in 0..7; found id 9``.
    """
    text = re.sub(r"\{\{function_node [^}]*\}\}", " ", message)
    text = re.sub(r"\[\[\{\{node [^}]*\}\}\]\]", " ", text)
    text = re.sub(r"\[\[[^\]]*\]\]", " ", text)
    text = re.sub(r"\[Op:[^\]]*\]( name:\s*\S*)?", " ", text)
    # "Error in user-defined function passed to MapDataset ...: assertion failed: ..."
    text, asserted = re.subn(r"^.*?assertion failed:\s*", "", text.strip(), flags=re.S)
    if asserted:  # tf.debugging.Assert prints each of its data items in brackets
        text = re.sub(r"\[([^\[\]]*)\]", r"\1", text)
    text = re.sub(r"\s+", " ", text).replace("( ", "(").replace(" )", ")").strip()
    return text.rstrip(" :") or message.strip()
