"""Label maps in, images out: the library behind ``spade-synthesize``.

``synthesize_files(backend, items, out_dir)`` reads each label map (and instance map),
checks it, batches maps of the model's size, asks a :class:`Backend` for the images and
writes them as PNGs named after their inputs. A back end is anything with ``info``
(:class:`ModelInfo`) and ``synthesize(labels, instances, seed, style)``:

- :class:`ModelFolderBackend`: a model folder (``spade-train`` / ``spade-convert-torch``
  output), run in this process;
- :class:`SavedModelBackend`: an exported SavedModel version, run in this process;
- the gRPC client (``spade_cli.synthesize`` adapts ``serving.client.SpadeClient``).

All three follow :mod:`spade_tf.inference`: the same seed or style photo gives the same
image from each. Outputs are written atomically (a hidden temporary file renamed into
place) and existing ones are kept unless ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from spade_tf.classes import ClassTable, class_table
from spade_tf.errors import SpadeError
from spade_tf.label_maps import LabelMapError, read_id_map

MAP_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg", ".webp")
RESIZE_MODES = ("model", "back")


class SynthesisError(SpadeError, ValueError):
    """Inputs synthesis cannot use; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a served or saved model accepts, whatever runs it."""

    image_size: tuple[int, int]
    num_classes: int
    use_dontcare_label: bool
    dontcare_label: int
    use_instance_edges: bool
    use_vae: bool
    max_batch_size: int
    classes: ClassTable

    @classmethod
    def from_metadata(cls, metadata: dict) -> ModelInfo:
        """From the export's ``spade_model.json`` (or the ``model_info`` signature)."""
        dontcare = metadata["dontcare_label"] if metadata["use_dontcare_label"] else None
        if metadata.get("classes"):
            table = ClassTable.from_dict(metadata["classes"])
        else:
            table = class_table("", metadata["num_classes"], dontcare)
        return cls(tuple(metadata["image_size"]), metadata["num_classes"],
                   metadata["use_dontcare_label"], metadata["dontcare_label"],
                   metadata["use_instance_edges"], metadata["use_vae"],
                   metadata["max_batch_size"], table)

    def check_ids(self, ids: np.ndarray, name: str) -> None:
        """Ids outside the classes (and the don't-care id) -> an error naming id and file."""
        valid = (ids >= 0) & (ids < self.num_classes)
        if self.use_dontcare_label:
            valid |= ids == self.dontcare_label
        if not valid.all():
            bad = np.unique(ids[~valid])
            allowed = f"0..{self.num_classes - 1}" + (
                f" or {self.dontcare_label} (don't care)" if self.use_dontcare_label else "")
            raise SynthesisError(
                f"{name} has label id {int(bad[0])} ({int((~valid).sum())} pixels"
                f"{', ids ' + str(bad[:8].tolist()) if len(bad) > 1 else ''}): this model's "
                f"ids are {allowed}. Is it a map of this dataset's classes?")


class Backend(Protocol):
    info: ModelInfo

    def synthesize(self, labels: np.ndarray, instances: np.ndarray | None,
                   seed: int | None, style: np.ndarray | None) -> np.ndarray:
        """int32 [B, H, W] ids (and instance ids), a style seed or a uint8 style photo
        [h, w, 3] for VAE models -> uint8 [B, H, W, 3]."""


# -- back ends that run in this process -------------------------------------------------


class ModelFolderBackend:
    """A model folder's generator (and encoder), as the exporter would serve it."""

    def __init__(self, model_dir: str | os.PathLike, checkpoint: str | None = None):
        import tensorflow as tf

        from spade_tf.folding import load_for_inference
        from spade_tf.models import build_semantic_input

        # What the exporter serves: spectral norm folded, at export.precision.
        networks = load_for_inference(model_dir, checkpoint=checkpoint)
        config = networks.config
        model = config.model
        self.info = ModelInfo(tuple(model.image_size), model.num_classes,
                              model.use_dontcare_label, model.dontcare_label,
                              model.use_instance_edges, model.use_vae,
                              config.export.max_batch_size, config.classes())
        self._generator, self._encoder = networks.generator, networks.encoder
        self._latent_dim = model.latent_dim
        self._semantic = build_semantic_input(model)
        self._call = tf.function(self._images)

    def _images(self, labels, instances, seeds, style):
        from spade_tf.inference import photo_to_unit, style_latent, to_uint8

        semantic = self._semantic(labels, instances)
        inputs = {"semantic": semantic}
        if self._encoder is not None:
            import tensorflow as tf

            batch = tf.shape(labels)[0]
            photo = None if style is None else tf.repeat(photo_to_unit(style), batch, axis=0)
            inputs["latent"] = style_latent(self._encoder, self._latent_dim, batch,
                                            photo=photo, seeds=seeds)
        return to_uint8(self._generator(inputs, training=False))

    def synthesize(self, labels, instances, seed, style):
        seeds = None if seed is None else np.full([len(labels)], seed, np.int64)
        style_batch = None if style is None else style[np.newaxis]
        images = self._call(labels.astype(np.int32),
                            None if instances is None else instances.astype(np.int32),
                            seeds, style_batch)
        return images.numpy()


class SavedModelBackend:
    """An exported version folder (``exports/<name>/<version>``), loaded in this process."""

    def __init__(self, version_dir: str | os.PathLike):
        import tensorflow as tf

        from spade_tf import signatures as sig

        folder = Path(version_dir)
        if not folder.exists():
            raise SynthesisError(f"--export {folder} does not exist: give a version folder "
                                 "that spade-export wrote, e.g. exports/spade/1.")
        metadata_path = folder / sig.SPADE_METADATA_FILE
        if not (folder / "saved_model.pb").is_file() or not metadata_path.is_file():
            hint = ""
            versions = sorted(p.name for p in folder.iterdir() if p.name.isdigit()) \
                if folder.is_dir() else []
            if versions:
                hint = (f" (it holds versions {', '.join(versions)}: give e.g. "
                    f"{folder / versions[-1]})")
            raise SynthesisError(f"{folder} is not a spade-export version folder{hint}: "
                                 f"expected saved_model.pb and {sig.SPADE_METADATA_FILE}.")
        self.info = ModelInfo.from_metadata(json.loads(metadata_path.read_text()))
        self._signatures = tf.saved_model.load(str(folder)).signatures
        self._sig = sig

    def synthesize(self, labels, instances, seed, style):
        import tensorflow as tf

        sig = self._sig
        inputs = {sig.LABEL_IDS: tf.constant(labels, tf.int32)}
        if instances is not None:
            inputs[sig.INSTANCE_IDS] = tf.constant(instances, tf.int32)
        name = sig.DEFAULT_SIGNATURE
        if seed is not None:
            name = sig.SEEDED_SIGNATURE
            inputs[sig.SEED] = tf.fill([len(labels)], tf.constant(seed, tf.int64))
        elif style is not None:
            name = sig.STYLE_SIGNATURE
            inputs[sig.STYLE_IMAGE] = tf.repeat(tf.constant(style[np.newaxis], tf.uint8),
                                                len(labels), axis=0)
        return self._signatures[name](**inputs)[sig.IMAGE].numpy()


# -- inputs -------------------------------------------------------------------------------


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


# -- outputs ------------------------------------------------------------------------------


def write_png_atomic(path: Path, array: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Write a PNG under a hidden temporary name, then rename it into place; ``text``
    goes into tEXt chunks (a tool's mark, to know its own files again)."""
    from PIL import PngImagePlugin

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    try:
        Image.fromarray(array).save(staging, format="PNG", pnginfo=info)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def _resize_back(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


@dataclasses.dataclass
class Result:
    """One synthesized (or kept, or skipped) input."""

    item: MapFile
    output: Path
    status: str  # "written", "kept" (existing output), "skipped" (bad input, --skip-bad)
    problem: str = ""
    labels: np.ndarray | None = None
    image: np.ndarray | None = None


@dataclasses.dataclass
class Summary:
    results: list[Result]
    seconds: float

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)


Progress = Callable[[int, int, float], None]


def _batches(loaded: Sequence[LoadedMap], size: int) -> Iterator[list[LoadedMap]]:
    for start in range(0, len(loaded), size):
        yield list(loaded[start:start + size])


def synthesize_files(backend: Backend, items: Sequence[MapFile], out_dir: str | os.PathLike,
                     batch_size: int | None = None, resize: str | None = None,
                     seed: int | None = None, style: np.ndarray | None = None,
                     overwrite: bool = False, skip_bad: bool = False,
                     allow_lossy: bool = False, keep_arrays: int = 0,
                     progress: Progress | None = None) -> Summary:
    """Synthesize an image for every item into ``out_dir/<name>.png``; see the module doc.

    ``resize``: None (maps must have the model's size), ``"model"`` (maps are resized to it,
    images written at the model's size) or ``"back"`` (images resized back to each map's
    size, bicubic). A bad input stops the run with a SynthesisError unless ``skip_bad``,
    which records it and goes on. The first ``keep_arrays`` written results (all with -1)
    keep their label map and image (for a contact sheet).
    """
    info = backend.info
    if resize is not None and resize not in RESIZE_MODES:
        raise SynthesisError(f"--resize {resize!r}: expected one of {list(RESIZE_MODES)}.")
    if (seed is not None or style is not None) and not info.use_vae:
        raise SynthesisError("--seed and --style choose a style: this model has no style "
                             "encoder (model.use_vae is false), so drop them.")
    batch_size = batch_size or info.max_batch_size
    if not 1 <= batch_size <= info.max_batch_size:
        raise SynthesisError(f"--batch-size {batch_size}: expected 1..{info.max_batch_size} "
                             "(the model's max_batch_size).")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SynthesisError(f"--out {out} is a file: give a folder for the images.")
    start = time.monotonic()
    results: list[Result] = []
    pending: list[LoadedMap] = []
    for item in items:
        output = out / f"{item.name}.png"
        if output.exists() and not overwrite:
            results.append(Result(item, output, "kept"))
            continue
        try:
            pending.append(load_map(item, info, resize, allow_lossy))
        except SynthesisError as error:
            if not skip_bad:
                raise
            results.append(Result(item, output, "skipped", str(error)))
    done = written = 0
    for batch in _batches(pending, batch_size):
        labels = np.stack([entry.labels for entry in batch])
        instances = np.stack([entry.instances for entry in batch]) \
            if info.use_instance_edges else None
        images = backend.synthesize(labels, instances, seed, style)
        for entry, image in zip(batch, images, strict=True):
            if resize == "back":
                image = _resize_back(image, entry.original_size)
            output = out / f"{entry.item.name}.png"
            write_png_atomic(output, image)
            keep = keep_arrays < 0 or written < keep_arrays
            written += 1
            results.append(Result(entry.item, output, "written",
                                  labels=entry.labels if keep else None,
                                  image=image if keep else None))
        done += len(batch)
        if progress is not None:
            progress(done, len(pending), time.monotonic() - start)
    order = {item.name: index for index, item in enumerate(items)}
    results.sort(key=lambda result: order[result.item.name])
    return Summary(results, time.monotonic() - start)
