"""Per-example work, run in worker processes: decode, check, re-encode maps.

Pure Pillow + numpy (no TensorFlow), so workers start fast and fork/spawn safely.
"""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from spade_tf.label_maps import LabelMapError, read_id_map
from spade_tf.label_space import MAX_LABEL_ID
from tfrecords_tools.datasets import LabelRule, Pair

MAX_MAP_ID = MAX_LABEL_ID


class BadPair(ValueError):
    """This example cannot be used; the message names the file and the reason."""


@dataclasses.dataclass(frozen=True)
class CheckedPair:
    key: str
    height: int
    width: int
    class_counts: np.ndarray  # pixels per valid id (don't-care last)
    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class EncodedPair:
    key: str
    image_bytes: bytes
    label_png: bytes
    instance_png: bytes | None
    height: int
    width: int


def _open_image(path) -> tuple[bytes, Image.Image]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BadPair(f"{path} cannot be read: {error.strerror or error}") from None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        # Pillow's own text names the in-memory buffer (<_io.BytesIO object at 0x...>).
        raise BadPair(f"{path} cannot be decoded: it is not a PNG or JPEG image (damaged, "
                      "or another format).") from None
    except (OSError, ValueError) as error:
        reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "it", str(error))
        raise BadPair(f"{path} cannot be decoded: {reason}") from None
    return data, image


def _map_array(path, what: str) -> np.ndarray:
    try:
        array = read_id_map(path, what)
    except LabelMapError as error:
        raise BadPair(str(error)) from None
    if array.min() < 0 or array.max() > MAX_MAP_ID:
        raise BadPair(f"{path} has values outside 0..{MAX_MAP_ID}.")
    return array


def _check_ids(label: np.ndarray, rule: LabelRule, path) -> np.ndarray:
    space = rule.space
    invalid = space.find_invalid(label)
    if invalid is not None:
        raise BadPair(invalid.message(str(path), rule.fix_hint()))
    return space.class_counts(label)


def _load(pair: Pair, rule: LabelRule):
    if pair.problem is not None:
        raise BadPair(pair.problem)
    image_bytes, image = _open_image(pair.image)
    label = _map_array(pair.label, "label map")
    if label.shape != (image.height, image.width):
        raise BadPair(f"{pair.label} is {label.shape[1]}x{label.shape[0]} but its image "
                      f"{pair.image} is {image.width}x{image.height}.")
    instance = None
    if pair.instance is not None:
        instance = _map_array(pair.instance, "instance map")
        if instance.shape != label.shape:
            raise BadPair(f"{pair.instance} is {instance.shape[1]}x{instance.shape[0]} but "
                          f"its image {pair.image} is {image.width}x{image.height}.")
    if image.mode not in ("RGB", "L", "RGBA", "P", "CMYK", "YCbCr"):
        raise BadPair(f"{pair.image} has unsupported pixel mode {image.mode}.")
    counts = _check_ids(label, rule, pair.label)
    return image_bytes, image, label, instance, counts


def check_pair(pair: Pair, rule: LabelRule) -> CheckedPair:
    """Decode everything and check it; never raises for bad data (problem is set)."""
    try:
        _, image, _, _, counts = _load(pair, rule)
    except BadPair as error:
        return CheckedPair(pair.key, 0, 0, np.zeros(0, np.int64), str(error))
    return CheckedPair(pair.key, image.height, image.width, counts)


def png_16bit(array: np.ndarray) -> bytes:
    """Lossless 16-bit grayscale PNG of an integer map."""
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_pair(pair: Pair, rule: LabelRule) -> EncodedPair:
    """The record fields of a (checked) pair; raises BadPair if it went bad since."""
    image_bytes, image, label, instance, _ = _load(pair, rule)
    return EncodedPair(
        key=pair.key, image_bytes=image_bytes, label_png=png_16bit(label),
        instance_png=png_16bit(instance) if instance is not None else None,
        height=image.height, width=image.width,
    )
