"""The reference's PyTorch checkpoints, read and normalized to one key layout.

Files are read by :func:`spade_tf.torch_state_dict.read_state_dict` (``weights_only``,
tensors only). Keys are then normalized: the ``module.`` prefix of ``DataParallel``
checkpoints is dropped, and the newer spectral-norm layout
(``parametrizations.weight.original`` / ``.0._u`` / ``.0._v``) is renamed to the
older one (``weight_orig`` / ``weight_u`` / ``weight_v``).
"""

from __future__ import annotations

import os

import numpy as np

from spade_tf.errors import SpadeError
from spade_tf.torch_state_dict import StateDictError, read_state_dict

DATA_PARALLEL_PREFIX = "module."
NEW_SPECTRAL_NORM_SUFFIXES = {
    "parametrizations.weight.original": "weight_orig",
    "parametrizations.weight.0._u": "weight_u",
    "parametrizations.weight.0._v": "weight_v",
}


class ConversionError(SpadeError, ValueError):
    """A checkpoint cannot be converted; the message says why and what to do."""


def normalize_key(key: str) -> str:
    """One naming for DataParallel and both spectral-norm layouts."""
    if key.startswith(DATA_PARALLEL_PREFIX):
        key = key[len(DATA_PARALLEL_PREFIX):]
    for suffix, legacy in NEW_SPECTRAL_NORM_SUFFIXES.items():
        if key.endswith(suffix):
            return key[: -len(suffix)] + legacy
    return key


def load_state_dict(path: str | os.PathLike, role: str = "checkpoint") -> dict[str, np.ndarray]:
    """Read ``path`` into ``{normalized key: numpy array}`` or raise ConversionError.

    ``role`` (e.g. "generator") only words the error messages.
    """
    try:
        state = read_state_dict(path, role)
    except StateDictError as error:
        raise ConversionError(str(error)) from None
    arrays: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = normalize_key(key)
        if name in arrays:
            raise ConversionError(f"the {role} checkpoint {path} names {name!r} twice.")
        arrays[name] = value
    return arrays
