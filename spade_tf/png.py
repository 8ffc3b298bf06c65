"""PNG files written atomically (:mod:`spade_tf.atomic`), with an optional mark."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from spade_tf.atomic import atomic_path


def write_png(path: str | os.PathLike, array: np.ndarray,
              text: dict[str, str] | None = None) -> Path:
    """Write ``array`` (uint8 HxWx3, HxW, or uint16 HxW) as a PNG at ``path``, never half
    a file; ``text`` goes into tEXt chunks (a tool's mark, to know its own files again)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    with atomic_path(path) as staging:
        Image.fromarray(array).save(staging, format="PNG", pnginfo=info)
    return Path(path)
