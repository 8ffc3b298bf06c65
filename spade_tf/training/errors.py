"""The errors training raises (re-exported by :mod:`spade_tf.training`)."""

from __future__ import annotations

from spade_tf.errors import SpadeError


class TrainingError(SpadeError, RuntimeError):
    """Training cannot start or cannot go on; the message says why."""


class LossBecameNaN(TrainingError):
    """A loss term became NaN or infinite."""

    exit_status = 3
    label = "stopped"
