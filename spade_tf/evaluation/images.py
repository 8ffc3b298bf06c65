"""Image folders for evaluation: listing, pairing by name, reading and writing PNGs.

- Images: ``.png``, ``.jpg``, ``.jpeg`` files anywhere under a folder (hidden files
  skipped), read as RGB uint8 ``[H, W, 3]``.
- Label maps: single-channel maps of class ids read by :mod:`spade_tf.label_maps`, as
  int32 ``[H, W]``.
- Generated images and label maps are paired by file stem (``a/x.png`` with ``b/x.png``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from spade_tf.evaluation.errors import EvaluationError
from spade_tf.label_maps import LabelMapError, read_id_map

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
LABEL_EXTENSIONS = (".png",)
_NAMES_SHOWN = 5  # how many missing or duplicate names an error lists


def list_images(folder: str | os.PathLike, what: str = "image",
                extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; an error when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise EvaluationError(f"the {what} folder {root} does not exist or is not a folder.")
    files = sorted(path for path in root.rglob("*")
                   if path.suffix.lower() in extensions and path.is_file()
                   and not any(part.startswith(".") for part in path.relative_to(root).parts))
    if not files:
        raise EvaluationError(f"the {what} folder {root} holds no {'/'.join(extensions)} files.")
    return files


def _by_stem(files: list[Path], what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    duplicates = []
    for path in files:
        if path.stem in found:
            duplicates.append(f"{found[path.stem]} and {path}")
        found[path.stem] = path
    if duplicates:
        raise EvaluationError(f"{what} files are paired by name, but {len(duplicates)} names "
                              f"occur twice: {'; '.join(duplicates[:_NAMES_SHOWN])}. Give each "
                              "file a unique name.")
    return found


def pair_by_stem(generated: list[Path], labels: list[Path]) -> list[tuple[str, Path, Path]]:
    """``(stem, generated file, label file)`` for every name, or an error naming the
    files that have no partner."""
    images, maps = _by_stem(generated, "generated"), _by_stem(labels, "label")
    problems = []
    for side, have, other in (("generated images", images, maps),
                              ("label maps", maps, images)):
        lonely = sorted(set(have) - set(other))
        if lonely:
            shown = ", ".join(str(have[name]) for name in lonely[:_NAMES_SHOWN])
            more = f" and {len(lonely) - _NAMES_SHOWN} more" if len(lonely) > _NAMES_SHOWN else ""
            problems.append(f"{len(lonely)} {side} have no partner of the same name "
                            f"({shown}{more})")
    if problems:
        raise EvaluationError("; ".join(problems) + ". Generated images and label maps are "
                              "paired by file name (spade-eval generate writes matching names).")
    return [(name, images[name], maps[name]) for name in sorted(images)]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8 ``[H, W, 3]``."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise EvaluationError(f"cannot read the image {path}: {error}") from None


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """A single-channel map of class ids as int32 ``[H, W]`` (see :mod:`spade_tf.label_maps`)."""
    try:
        return read_id_map(path).astype(np.int32)
    except LabelMapError as error:
        raise EvaluationError(str(error)) from None


def same_size_batches(items: Iterable[tuple[str, np.ndarray]],
                      batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """Group consecutive ``(name, array)`` items into stacked batches of one array shape
    (networks take one size per batch); a new size starts a new batch."""
    if batch_size < 1:
        raise EvaluationError(f"batch size must be a positive integer; got {batch_size}.")
    names: list[str] = []
    arrays: list[np.ndarray] = []
    for name, array in items:
        if arrays and (array.shape != arrays[0].shape or len(arrays) == batch_size):
            yield names, np.stack(arrays)
            names, arrays = [], []
        names.append(name)
        arrays.append(array)
    if arrays:
        yield names, np.stack(arrays)
