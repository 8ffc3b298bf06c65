"""The one error type of the evaluation package."""

from __future__ import annotations

from spade_tf.errors import SpadeError


class EvaluationError(SpadeError, ValueError):
    """Inputs an evaluation cannot use (files, folders, shapes, networks); the message
    says what was received, what was expected and how to fix it."""
