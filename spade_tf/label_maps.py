"""Reading label and instance maps: single-channel images of integer ids, losslessly stored.

One reader for every tool (conversion, synthesis, evaluation), so a map one of them
accepts, every other accepts too. Accepted: PNG (or another lossless format) in 1-bit,
8-bit grayscale, palette (the palette index is the id) or 16/32-bit integer modes; and a
grey map saved as RGB (all three channels equal, alpha if any opaque: what image editors
and ``cv2.imwrite`` often write), read from one channel with a note, once per process, on
the ``spade_tf.label_maps`` logger (plain stderr unless logging is configured).
Refused, with the reason: JPEG (lossy compression changes ids at region edges), colour
images (a rendering of the classes, not their ids) and 16-bit-per-channel RGB PNGs (Pillow
reads them as 8 bits). Numpy and Pillow only.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from spade_tf.errors import SpadeError

# Pillow modes that hold one integer per pixel (palette images hold the index).
ID_MAP_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N")
# Modes that may hold a grey map saved as colour (equal channels, opaque alpha).
GREY_AS_COLOUR_MODES = ("RGB", "RGBA", "LA")
LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")

_log = logging.getLogger(__name__)
_noted_grey = False  # the grey-as-RGB note is said once per process


class LabelMapError(SpadeError, ValueError):
    """A file cannot be used as a map of ids; the message names it and says why."""


def _article(mode: str) -> str:
    """"an" before a mode spelled out letter by letter (an RGB, an LA, a CMYK)."""
    return "an" if mode[:1] in "AEFHILMNORSX" else "a"


def _grey_channel(image: Image.Image) -> np.ndarray | None:
    """The one channel of a grey map saved as RGB/RGBA/LA; None if it is not one."""
    array = np.asarray(image)
    colour, alpha = (array[..., :1], array[..., 1]) if image.mode == "LA" else \
        (array[..., :3], array[..., 3] if image.mode == "RGBA" else None)
    if alpha is not None and not (alpha == 255).all():
        return None
    if not (colour == colour[..., :1]).all():
        return None
    return colour[..., 0]


def _rawmode(args: object) -> str:
    """The raw mode of a tile's decoder arguments (a string, or a tuple led by one)."""
    raw = args[0] if isinstance(args, tuple) and args else args
    return raw if isinstance(raw, str) else ""


def _note_grey(what: str, name: str, mode: str) -> None:
    global _noted_grey
    if not _noted_grey:
        _noted_grey = True
        _log.warning(f"note: the {what} {name} is {_article(mode)} {mode} image whose colour "
                     "channels are all equal (a grey map saved as colour): its ids are read "
                     "from one channel, here and in every such map.")


def id_map_from_image(image: Image.Image, name: str, what: str = "label map",
                      allow_lossy: bool = False, wide_samples: bool = False) -> np.ndarray:
    """An opened image -> int64 ids [H, W], or a LabelMapError naming ``name``.

    ``wide_samples``: the file stores 16 bits per colour channel (Pillow keeps 8 of them).
    """
    if image.format in LOSSY_FORMATS and not allow_lossy:
        raise LabelMapError(
            f"the {what} {name} is a {image.format} file: lossy compression changes ids at "
            "region edges. Save the map as PNG (allow it anyway with --allow-lossy).")
    mode = image.mode
    if mode in GREY_AS_COLOUR_MODES and wide_samples:
        raise LabelMapError(
            f"the {what} {name} is a 16-bit-per-channel {mode} PNG, which is read with 8 bits "
            "per channel (ids above 255 would change): save it as a single-channel 16-bit "
            "grayscale PNG of ids.")
    if mode in ID_MAP_MODES:
        return np.asarray(image).astype(np.int64)
    grey = _grey_channel(image) if mode in GREY_AS_COLOUR_MODES else None
    if grey is not None:
        _note_grey(what, name, mode)
        return grey.astype(np.int64)
    colour = mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA", "PA")
    hint = (": it looks like a colour rendering of the classes; convert it to a "
            "single-channel map of ids with the dataset's palette" if colour else "")
    raise LabelMapError(f"the {what} {name} is {_article(mode)} {mode} image; expected one "
                        f"channel of ids (an 8- or 16-bit grayscale or palette PNG){hint}.")


def read_id_map(path: str | os.PathLike, what: str = "label map",
                allow_lossy: bool = False) -> np.ndarray:
    """The map of ids in ``path`` as int64 [H, W]; ``what`` words the errors."""
    try:
        with Image.open(path) as image:
            # Only the undecoded tile says 16 bits per channel ("RGB;16B"); load() drops it.
            wide = image.mode in GREY_AS_COLOUR_MODES and any(
                ";16" in _rawmode(tile.args) for tile in image.tile)
            image.load()
            return id_map_from_image(image, str(path), what, allow_lossy, wide)
    except FileNotFoundError:
        raise LabelMapError(f"the {what} {path} does not exist.") from None
    except LabelMapError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise LabelMapError(f"the {what} {path} cannot be decoded as an image: "
                            f"{error}") from None
