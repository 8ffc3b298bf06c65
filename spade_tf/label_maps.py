"""Reading label and instance maps: single-channel images of integer ids, losslessly stored.

One reader for every tool (conversion, synthesis, evaluation), so a map one of them
accepts, every other accepts too. Accepted: PNG (or another lossless format) in 1-bit,
8-bit grayscale, palette (the palette index is the id) or 16/32-bit integer modes.
Refused, with the reason: JPEG (lossy compression changes ids at region edges) and colour
images (a rendering of the classes, not their ids). Numpy and Pillow only.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from spade_tf.errors import SpadeError

# Pillow modes that hold one integer per pixel (palette images hold the index).
ID_MAP_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N")
LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")


class LabelMapError(SpadeError, ValueError):
    """A file cannot be used as a map of ids; the message names it and says why."""


def id_map_from_image(image: Image.Image, name: str, what: str = "label map",
                      allow_lossy: bool = False) -> np.ndarray:
    """An opened image -> int64 ids [H, W], or a LabelMapError naming ``name``."""
    if image.format in LOSSY_FORMATS and not allow_lossy:
        raise LabelMapError(
            f"the {what} {name} is a {image.format} file: lossy compression changes ids at "
            "region edges. Save the map as PNG (allow it anyway with --allow-lossy).")
    if image.mode not in ID_MAP_MODES:
        colour = image.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA", "PA")
        hint = (": it looks like a colour rendering of the classes; convert it to a "
                "single-channel map of ids with the dataset's palette" if colour else "")
        raise LabelMapError(f"the {what} {name} is a {image.mode} image; expected one channel "
                            f"of ids (an 8- or 16-bit grayscale or palette PNG){hint}.")
    array = np.asarray(image)
    return array.astype(np.int64)


def read_id_map(path: str | os.PathLike, what: str = "label map",
                allow_lossy: bool = False) -> np.ndarray:
    """The map of ids in ``path`` as int64 [H, W]; ``what`` words the errors."""
    try:
        with Image.open(path) as image:
            image.load()
            return id_map_from_image(image, str(path), what, allow_lossy)
    except FileNotFoundError:
        raise LabelMapError(f"the {what} {path} does not exist.") from None
    except LabelMapError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise LabelMapError(f"the {what} {path} cannot be decoded as an image: "
                            f"{error}") from None
