"""Reading the reference's PyTorch ``state_dict`` files as untrusted input.

Files are opened with ``torch.load(weights_only=True)``, which refuses arbitrary
pickled objects. Keys are normalized to one layout: the ``module.`` prefix of
``DataParallel`` checkpoints is dropped, and the newer spectral-norm layout
(``parametrizations.weight.original`` / ``.0._u`` / ``.0._v``) is renamed to the
older one (``weight_orig`` / ``weight_u`` / ``weight_v``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATA_PARALLEL_PREFIX = "module."
NEW_SPECTRAL_NORM_SUFFIXES = {
    "parametrizations.weight.original": "weight_orig",
    "parametrizations.weight.0._u": "weight_u",
    "parametrizations.weight.0._v": "weight_v",
}


class ConversionError(ValueError):
    """A checkpoint cannot be converted; the message says why and what to do."""


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ConversionError(
            "reading PyTorch checkpoints needs PyTorch: pip install 'spade-tf[convert]' "
            "(or pip install torch)."
        ) from None
    return torch


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
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"the {role} checkpoint {path} does not exist or is not a file.")
    torch = _import_torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for bad files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ConversionError(
            f"the {role} checkpoint {path} is not a readable PyTorch file (corrupt, truncated "
            f"or another format): {type(error).__name__}: {first_line}"
        ) from None
    if not isinstance(state, dict) or not state:
        raise ConversionError(
            f"the {role} checkpoint {path} holds a {type(state).__name__}, not a state_dict "
            "(a mapping of parameter names to tensors such as latest_net_G.pth)."
        )
    arrays: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ConversionError(
                f"the {role} checkpoint {path} is not a state_dict: entry {key!r} holds a "
                f"{type(value).__name__}, not a tensor."
            )
        name = normalize_key(key)
        if name in arrays:
            raise ConversionError(f"the {role} checkpoint {path} names {name!r} twice.")
        arrays[name] = value.detach().cpu().numpy()
    return arrays
