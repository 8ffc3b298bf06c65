"""Label-map files for synthesis: finding them, pairing instance maps, reading, checking
and fitting them to a model's size, and reading style photos."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from spade_tf.errors import SpadeError
from spade_tf.label_maps import LabelMapError, read_id_map

if TYPE_CHECKING:
    from spade_tf.synthesis_backends import ModelInfo

MAP_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg", ".webp")


class SynthesisError(SpadeError, ValueError):
    """Inputs synthesis cannot use; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class MapFile:
    """One label map to synthesize from, its instance map, and the output's name."""

    name: str
    label: Path
    instance: Path | None = None


def _map_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and path.suffix.lower() in MAP_SUFFIXES
                  and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def list_map_files(labels: str | os.PathLike, instances: str | os.PathLike | None,
                   uses_instances: bool) -> list[MapFile]:
    """The label maps under ``labels`` (a file or a folder, searched recursively) paired
    with their instance maps (same relative path and stem) when the model uses them."""
    labels = Path(labels)
    if not labels.exists():
        raise SynthesisError(f"--labels {labels} does not exist.")
    if uses_instances and instances is None:
        raise SynthesisError("this model uses instance maps (model.use_instance_edges): give "
                             "--instances, a file or a folder of instance maps.")
    if not uses_instances and instances is not None:
        raise SynthesisError("this model does not use instance maps: drop --instances.")
    if labels.is_file():
        files, root = [labels], labels.parent
    else:
        files, root = _map_files(labels), labels
        if not files:
            raise SynthesisError(f"--labels {labels} holds no label maps "
                                 f"({', '.join(MAP_SUFFIXES[:2])} ...).")
    names: dict[str, Path] = {}
    pairs = []
    for path in files:
        relative = path.relative_to(root).with_suffix("")
        name = relative.as_posix()
        if name in names:
            raise SynthesisError(f"{names[name]} and {path} would both write {name}.png: "
                                 "give each label map its own name.")
        names[name] = path
        instance = None
        if instances is not None:
            instance = _instance_for(Path(instances), relative, labels.is_file())
        pairs.append(MapFile(name, path, instance))
    return pairs


def _instance_for(instances: Path, relative: Path, single: bool) -> Path:
    if single:
        if not instances.is_file():
            raise SynthesisError(f"--instances {instances} is not a file (one label map was "
                                 "given: give its instance map).")
        return instances
    for suffix in MAP_SUFFIXES:
        candidate = instances / relative.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise SynthesisError(f"no instance map for {relative.as_posix()} in {instances} "
                         f"(expected {instances / relative.with_suffix('.png')}).")


def read_style_photo(path: str | os.PathLike) -> np.ndarray:
    """A style photo as RGB uint8 [h, w, 3]."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise SynthesisError(f"the style photo {path} does not exist.") from None
    except (OSError, ValueError) as error:  # Pillow's UnidentifiedImageError is an OSError
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise SynthesisError(f"the style photo {path} cannot be read as an image ({reason}); "
                             "give a PNG or JPEG photo.") from None


def _resize_ids(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a map of ids (ids never change)."""
    height, width = size
    rows = (np.arange(height) * ids.shape[0] // height).clip(0, ids.shape[0] - 1)
    cols = (np.arange(width) * ids.shape[1] // width).clip(0, ids.shape[1] - 1)
    return ids[rows][:, cols]


@dataclasses.dataclass
class LoadedMap:
    item: MapFile
    labels: np.ndarray
    instances: np.ndarray | None
    original_size: tuple[int, int]


def read_maps(item: MapFile, allow_lossy: bool = False):
    """The label map (and instance map) of ``item``, read and checked against each other."""
    try:
        labels = read_id_map(item.label, "label map", allow_lossy)
        instances = None if item.instance is None else read_id_map(
            item.instance, "instance map", allow_lossy)
    except LabelMapError as error:
        raise SynthesisError(str(error)) from None
    if instances is not None and instances.shape != labels.shape:
        raise SynthesisError(f"the instance map {item.instance} is {instances.shape[1]}x"
                             f"{instances.shape[0]} but the label map {item.label} is "
                             f"{labels.shape[1]}x{labels.shape[0]}: they must match.")
    return labels, instances


def load_map(item: MapFile, info: ModelInfo, resize: str | None,
             allow_lossy: bool = False) -> LoadedMap:
    """Read, check and (with ``resize``) fit one map pair to the model's size."""
    labels, instances = read_maps(item, allow_lossy)
    original = labels.shape
    height, width = info.image_size
    if original != (height, width):
        if resize is None:
            raise SynthesisError(
                f"the label map {item.label} is {original[1]}x{original[0]} but this model "
                f"makes {width}x{height} images: add --resize (nearest neighbour, ids kept) "
                "or resize the map yourself.")
        labels = _resize_ids(labels, (height, width))
        instances = None if instances is None else _resize_ids(instances, (height, width))
    info.check_ids(labels, str(item.label))
    return LoadedMap(item, labels.astype(np.int32),
                     None if instances is None else instances.astype(np.int32), original)
