"""Label maps in, images out: the library behind ``spade-synthesize``.

``synthesize_files(backend, items, out_dir)`` reads each label map (and instance map) of
:mod:`spade_tf.map_files`, checks it, batches maps of the model's size, asks a back end
(:mod:`spade_tf.synthesis_backends`) for the images and writes them as PNGs named after
their inputs. Outputs are written atomically (:mod:`spade_tf.atomic`) and existing ones
are kept unless ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from spade_tf.map_files import LoadedMap, MapFile, SynthesisError, load_map
from spade_tf.png import write_png
from spade_tf.synthesis_backends import Backend

RESIZE_MODES = ("model", "back")

__all__ = ["RESIZE_MODES", "Result", "Summary", "SynthesisError", "synthesize_files"]


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
            write_png(output, image)
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
