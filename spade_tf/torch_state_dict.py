"""Reading PyTorch ``state_dict`` files as untrusted input (needs the ``[convert]`` extra).

Files are opened with ``torch.load(weights_only=True)``, which refuses arbitrary pickled
objects, and must hold a mapping of parameter names to tensors. Used for the reference's
checkpoints (:mod:`spade_tf.convert`) and torchvision's VGG19 weights
(:mod:`spade_tf.training.vgg`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spade_tf.errors import SpadeError
from spade_tf.torch_import import import_torch_beside_tensorflow


class StateDictError(SpadeError, ValueError):
    """A file is not a readable PyTorch state_dict; the message says which and why."""


def import_torch():
    """The ``torch`` module (Triton kept out: :mod:`spade_tf.torch_import`), or a
    StateDictError saying how to install it."""
    try:
        torch = import_torch_beside_tensorflow()
    except ImportError:
        raise StateDictError(
            "reading PyTorch checkpoints needs PyTorch: pip install 'spade-tf[convert]' "
            "(or pip install torch)."
        ) from None
    return torch


def read_state_dict(path: str | os.PathLike, role: str = "checkpoint") -> dict[str, np.ndarray]:
    """``{parameter name: numpy array}`` from ``path``, or a StateDictError.

    ``role`` (e.g. "generator", "VGG19") only words the error messages.
    """
    path = Path(path)
    if path.is_dir():
        raise StateDictError(f"the {role} checkpoint {path} is a folder: give the .pth file "
                             "in it (e.g. latest_net_G.pth).")
    if not path.is_file():
        raise StateDictError(f"the {role} checkpoint {path} does not exist.")
    torch = import_torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for bad files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise StateDictError(
            f"the {role} checkpoint {path} is not a readable PyTorch file (corrupt, truncated "
            f"or another format): {type(error).__name__}: {first_line}"
        ) from None
    if not isinstance(state, dict) or not state:
        raise StateDictError(
            f"the {role} checkpoint {path} holds a {type(state).__name__}, not a state_dict "
            "(a mapping of parameter names to tensors such as latest_net_G.pth)."
        )
    arrays: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise StateDictError(
                f"the {role} checkpoint {path} is not a state_dict: entry {key!r} holds a "
                f"{type(value).__name__}, not a tensor."
            )
        arrays[key] = value.detach().cpu().numpy()
    return arrays
