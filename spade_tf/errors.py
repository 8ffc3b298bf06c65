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


def strip_tf_internals(message: str) -> str:
    """A TensorFlow error message without the graph internals nobody can act on
    (``{{function_node ...}}``, ``[[{{node ...}}]]``, ``[Op:...]``, "Graph execution
    error", stack-trace notes), on one line, with its own wording kept (TF Serving's
    clients see in-graph assertions as ``assertion failed: [...] [...]``)."""
    noise = ("Graph execution error:", "Detected at node", "<stack traces unavailable>")
    lines = [line for line in message.splitlines()
             if line.strip() and not line.startswith(noise) and not line.startswith("\t [[")]
    text = " ".join(line.strip() for line in lines) or message
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[\[\{\{node [^}]*\}\}\]\]", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\]( name:\s*\S*)?\s*$", "", text)
    return text.replace("\\'", "'").strip()


def _bracketed_items(text: str) -> list[str] | None:
    """``[a [b] c] [d]`` -> ``["a [b] c", "d"]``; None unless ``text`` is only such items."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "[":
            if depth == 0:
                start = index + 1
            depth += 1
        elif char == "]" and depth:
            depth -= 1
            if depth == 0:
                items.append(text[start:index])
        elif depth == 0 and not char.isspace():
            return None
    return items if items and depth == 0 else None


def readable_tf_message(message: str) -> str:
    """A TensorFlow error message as a sentence: :func:`strip_tf_internals`, then the
    bracketed items of an in-graph assertion joined.

    ``... assertion failed: [label ids must be in 0..7; found id] [9] [(occurrences:] [4]
    [). Check ...]`` becomes ``label ids must be in 0..7; found id 9 (occurrences: 4).
    Check ...``; ``[label_ids must be [batch, 64, 64] ...] [Condition x == y did not hold
    element-wise:] [x (strided_slice_1:0) = ] [32 64] [y (Const:0) = ] [64 64]`` becomes
    ``label_ids must be [batch, 64, 64] ... (received 32 64)``. What precedes "assertion
    failed:" (tf.data's "Error in user-defined function ...") is dropped.
    """
    text = strip_tf_internals(message)
    _, found, asserted = text.partition("assertion failed:")
    items = _bracketed_items(asserted) if found else None
    if items is None:
        return text or message.strip()
    sentence, data = items[0].strip(), items[1:]
    if data and data[0].startswith("Condition "):  # tf.debugging.assert_equal & co.
        received = data[2].strip() if len(data) > 2 else ""
        return f"{sentence} (received {received})"
    words = " ".join([sentence, *(item.strip() for item in data)])
    return words.replace("( ", "(").replace(" )", ")").strip()
