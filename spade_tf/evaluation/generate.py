"""Run a trained generator over TFRecords and write PNG folders the metrics read.

``generate_images(model_dir, data_dir, out_dir)`` writes, for every record (in shard
order, no augmentation: the evaluation preprocessing of ``spade_tf.data.pipeline``):

- ``generated/<name>.png``: the generator's image, uint8 by
  :func:`spade_tf.inference_rules.to_uint8`;
- ``real/<name>.png``: the photo after the same preprocessing (the model's size);
- ``labels/<name>.png``: the label ids at that size (8-bit PNG, 16-bit when an id > 255).

``<name>`` is the record key's file stem (its index is appended when two keys share a
stem). VAE models take their latent by the rule of :mod:`spade_tf.inference_rules`: the
encoder's mean on the real photo (``latent="encode"``), or the style seed ``seed + i`` for
example ``i`` (``latent="random"``), the image ``spade-synthesize --seed`` gives.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spade_tf.evaluation.errors import EvaluationError
from spade_tf.png import write_png

SUBFOLDERS = ("generated", "real", "labels")
LATENT_MODES = ("encode", "random")


@dataclasses.dataclass(frozen=True)
class GenerateSummary:
    out_dir: Path
    num_images: int
    image_size: tuple[int, int]
    names: tuple[str, ...]


def _dataset(data_dir, config, batch_size: int, limit: int | None):
    """Shard files, batches of decoded records in shard order preprocessed for evaluation
    (centre crop, no flip), and their number of examples."""
    import tensorflow as tf

    from spade_tf.data.manifest import check_shard_files, read_manifest
    from spade_tf.data.pipeline import decode_record

    model = config.model
    manifest = read_manifest(data_dir)
    manifest.check_label_settings(model.num_classes, model.use_dontcare_label,
                                  model.dontcare_label, model.use_instance_edges)
    files = [str(path) for path in check_shard_files(data_dir, manifest)]
    unused_seed = tf.zeros([2], tf.int32)  # no augmentation: nothing random

    records = tf.data.TFRecordDataset(files)  # one file after another: shard order
    total = manifest.num_examples
    if limit is not None:
        records, total = records.take(limit), min(limit, total)
    batches = records.map(lambda record: decode_record(record, model, config.data, unused_seed,
                                                       augment=False)).batch(batch_size)
    return files, batches, total


def _latent(networks, photo, indices, seed: int, latent: str):
    """The :mod:`spade_tf.inference_rules` rule: the photo's style, or style seed ``seed + i``."""
    import numpy as np

    from spade_tf.inference_rules import photo_to_unit, style_latent

    model = networks.config.model
    if latent == "random":
        seeds = np.array([seed + index for index in indices], np.int64)
        return style_latent(networks.encoder, model.latent_dim, len(seeds), seeds=seeds)
    return style_latent(networks.encoder, model.latent_dim, len(indices),
                        photo=photo_to_unit(photo))


def _name(key: bytes, index: int, used: set[str]) -> str:
    stem = Path(key.decode("utf-8", "replace")).stem or f"{index:06d}"
    name = stem if stem not in used else f"{stem}_{index:06d}"
    used.add(name)
    return name


def generate_images(model_dir: str | os.PathLike, data_dir: str | os.PathLike,
                    out_dir: str | os.PathLike, limit: int | None = None, seed: int = 0,
                    batch_size: int = 8, latent: str = "encode", overwrite: bool = False,
                    progress: Callable[[int, int], None] | None = None,
                    precision: str | None = None,
                    weights: str | None = None) -> GenerateSummary:
    """Write ``generated/``, ``real/`` and ``labels/`` PNGs for the records of ``data_dir``.

    ``precision`` ("float32", "bfloat16", "float16"; default: the config's
    ``export.precision``, as every inference command) is the generator's and encoder's
    compute type (see :mod:`spade_tf.precision`). ``weights``: "ema" (the averaged
    generator), "raw" or None (the averaged one where the folder has it), as
    :func:`~spade_tf.inference_loader.load_for_inference` picks.
    The folder appears complete or not at all; an existing non-empty ``out_dir`` is
    refused unless ``overwrite``.
    """
    import tensorflow as tf

    from spade_tf.atomic import atomic_directory
    from spade_tf.data.pipeline import explain_data_errors
    from spade_tf.errors import readable_tf_message
    from spade_tf.inference_loader import load_for_inference
    from spade_tf.inference_rules import to_uint8
    from spade_tf.model_dir import check_target, replaces
    from spade_tf.models import build_semantic_input
    from spade_tf.precision import check_precision

    if latent not in LATENT_MODES:
        raise EvaluationError(f"latent {latent!r} is unknown: expected one of "
                              f"{list(LATENT_MODES)}.")
    if limit is not None and limit < 1:
        raise EvaluationError(f"limit must be a positive number of images; got {limit}.")
    if batch_size < 1:
        raise EvaluationError(f"batch size must be a positive integer; got {batch_size}.")
    if precision is not None:
        check_precision(precision)  # an unknown name fails before any loading
    check_target(out_dir, overwrite)  # so does an --out that would be refused at the end
    networks = load_for_inference(model_dir, precision, weights=weights)
    model = networks.config.model
    if model.use_vae and networks.encoder is None and latent == "encode":
        from spade_tf.layout import encoder_file

        raise EvaluationError(f"{model_dir} is a VAE model without "
                              f"{encoder_file(networks.weights)}, so the latent cannot be "
                              "encoded from the photos; use latent 'random'.")
    files, batches, total = _dataset(data_dir, networks.config, batch_size, limit)
    semantic_input = build_semantic_input(model)
    names: list[str] = []
    used: set[str] = set()
    check_target(out_dir, overwrite)  # again: the loading above takes a while
    try:
        with atomic_directory(out_dir, replace=replaces(out_dir, overwrite)) as out, \
                explain_data_errors(files):
            for sub in SUBFOLDERS:
                (out / sub).mkdir()
            for batch in batches:
                keys, labels, instances, photos = (batch[name] for name in
                                                   ("key", "label", "instance", "photo"))
                semantic = semantic_input(labels, instances if model.use_instance_edges else None)
                inputs = {"semantic": semantic}
                if model.use_vae:
                    indices = range(len(names), len(names) + int(labels.shape[0]))
                    inputs["latent"] = _latent(networks, photos, indices, seed, latent)
                images = to_uint8(networks.generator(inputs, training=False)).numpy()
                reals = np.clip(np.round(photos.numpy()), 0, 255).astype(np.uint8)
                for key, image, real, label in zip(keys.numpy(), images, reals, labels.numpy(),
                                                   strict=True):
                    name = _name(key, len(names), used)
                    write_png(out / "generated" / f"{name}.png", image)
                    write_png(out / "real" / f"{name}.png", real)
                    write_png(out / "labels" / f"{name}.png",
                              label.astype(np.uint8 if label.max() <= 255 else np.uint16))
                    names.append(name)
                if progress is not None:
                    progress(len(names), total)
    except tf.errors.InvalidArgumentError as error:  # e.g. label ids outside the classes
        raise EvaluationError(f"reading {data_dir} failed: "
                              f"{readable_tf_message(error.message)}") from None
    except tf.errors.ResourceExhaustedError as error:
        raise EvaluationError(f"out of memory at batch size {batch_size} "
                              f"({readable_tf_message(error.message)[:300]}); use a smaller "
                              "--batch-size.") from None
    return GenerateSummary(Path(out_dir), len(names), model.image_size, tuple(names))
