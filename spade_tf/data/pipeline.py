"""tf.data input functions over converted TFRecords, for one device or many.

``make_input_fn`` returns ``input_fn(input_context)`` for
``strategy.distribute_datasets_from_function``: each input pipeline reads its own subset
of the shards (or of the records, when there are fewer shards than pipelines),
interleaves them, shuffles, decodes, applies the reference's preprocessing with the same
crop and flip for photo, label map and instance map (bicubic for photos, nearest for
maps), batches per replica and prefetches. Elements are dicts:

- ``"label"``: int32 [B, H, W], the dataset's label ids;
- ``"instance"``: int32 [B, H, W] instance ids (only when the model uses instance edges;
  :class:`~spade_tf.layers.SemanticInput` turns them into edges);
- ``"image"``: float32 [B, H, W, 3] in [-1, 1].

``H x W`` is the model's image size. Preprocessing modes (``data.preprocess``):
``resize_and_crop`` (resize to load_size x load_size, then crop), ``scale_width_and_crop``
(scale the width to load_size keeping the aspect ratio, then crop), ``fixed`` (resize to
H x W), ``none`` (use as is: the data must already be H x W). Crops are random when
augmenting, centred otherwise; flips only when augmenting and ``data.flip``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import tensorflow as tf

from spade_tf.config import DataConfig, ModelConfig
from spade_tf.data.manifest import DataError, check_shard_files, read_manifest
from spade_tf.data.schema import parse_example

AUTOTUNE = tf.data.AUTOTUNE


def _resize(image, label, instance, size, method_for_photo: str = "bicubic"):
    photo = tf.image.resize(tf.cast(image, tf.float32), size, method=method_for_photo,
                            antialias=True)
    photo = tf.clip_by_value(tf.round(photo), 0.0, 255.0)
    maps = tf.image.resize(tf.stack([label, instance], axis=-1), size, method="nearest")
    return photo, maps[..., 0], maps[..., 1]


def _crop_and_flip(photo, label, instance, size, seed, augment: bool, flip: bool):
    """One crop window and one flip decision for the photo and both maps."""
    stacked = tf.concat([tf.cast(photo, tf.float32), tf.cast(label, tf.float32)[..., None],
                         tf.cast(instance, tf.float32)[..., None]], axis=-1)
    height, width = size
    if augment:
        stacked = tf.image.stateless_random_crop(stacked, [height, width, 5], seed=seed)
        if flip:
            stacked = tf.image.stateless_random_flip_left_right(stacked, seed=seed + 1)
    else:
        stacked = tf.image.resize_with_crop_or_pad(stacked, height, width)
    # Ids below 2**24 are exact in float32; maps are 16-bit.
    return (stacked[..., :3], tf.cast(stacked[..., 3], tf.int32),
            tf.cast(stacked[..., 4], tf.int32))


def preprocess(example: dict, seed, data: DataConfig, image_size: tuple[int, int],
               augment: bool) -> tuple:
    """Decoded example -> (photo float [0, 255], label int32, instance int32) at image_size."""
    image, label, instance = example["image"], example["label"], example["instance"]
    height, width = image_size
    if data.preprocess == "resize_and_crop":
        image, label, instance = _resize(image, label, instance, [data.load_size] * 2)
    elif data.preprocess == "scale_width_and_crop":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        new_height = tf.cast(tf.round(data.load_size * shape[0] / shape[1]), tf.int32)
        image, label, instance = _resize(image, label, instance,
                                         tf.stack([new_height, data.load_size]))
    elif data.preprocess == "fixed":
        image, label, instance = _resize(image, label, instance, [height, width])
    else:
        check = tf.debugging.assert_equal(
            tf.shape(image)[:2], tf.constant([height, width]),
            message=f"data.preprocess='none' needs {height}x{width} examples; this one "
                    "differs (use resize_and_crop or fixed)")
        with tf.control_dependencies([check]):
            image = tf.identity(image)
    return _crop_and_flip(image, label, instance, image_size, seed, augment,
                          data.flip and augment)


def _to_model_inputs(photo, label, instance, use_instances: bool) -> dict:
    element = {"label": label, "image": tf.cast(photo, tf.float32) / 127.5 - 1.0}
    if use_instances:
        element["instance"] = instance
    return element


def make_input_fn(
    data_dir: str | os.PathLike,
    model: ModelConfig,
    data: DataConfig,
    global_batch_size: int,
    augment: bool = True,
    shuffle: bool = True,
    repeat: bool = False,
    drop_remainder: bool = True,
    seed: int = 0,
) -> Callable[[tf.distribute.InputContext | None], tf.data.Dataset]:
    """An ``input_fn(input_context)`` over the shards in ``data_dir``.

    Checks up front that the shards exist with their recorded sizes and that the data's
    label settings fit the model. ``drop_remainder`` keeps batch shapes static (the
    default, as synchronized batch norm and XLA want).
    """
    manifest = read_manifest(data_dir)
    manifest.check_label_settings(model.num_classes, model.use_dontcare_label,
                                  model.dontcare_label, model.use_instance_edges)
    files = [str(p) for p in check_shard_files(data_dir, manifest)]
    image_size = model.image_size

    def input_fn(context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        pipelines = context.num_input_pipelines if context else 1
        pipeline_id = context.input_pipeline_id if context else 0
        batch = context.get_per_replica_batch_size(global_batch_size) if context \
            else global_batch_size
        dataset = tf.data.Dataset.from_tensor_slices(files)
        shard_files = len(files) >= pipelines
        if shard_files and pipelines > 1:
            dataset = dataset.shard(pipelines, pipeline_id)
        if shuffle:
            dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.interleave(
            tf.data.TFRecordDataset, cycle_length=min(data.num_parallel_reads, len(files)),
            num_parallel_calls=AUTOTUNE, deterministic=not shuffle)
        if not shard_files and pipelines > 1:
            dataset = dataset.shard(pipelines, pipeline_id)
        if shuffle and data.shuffle_buffer > 0:
            dataset = dataset.shuffle(data.shuffle_buffer, seed=seed + pipeline_id,
                                      reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
        # Stateless augmentation seeds, fresh on every pass over the data.
        seeds = tf.data.Dataset.random(seed=seed + 1000 * pipeline_id,
                                       rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds))

        def load(record, example_seed):
            example = parse_example(record)
            photo, label, instance = preprocess(example, tf.cast(example_seed, tf.int32), data,
                                                image_size, augment)
            return _to_model_inputs(photo, label, instance, model.use_instance_edges)

        dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=not shuffle)
        dataset = dataset.batch(batch, drop_remainder=drop_remainder)
        return dataset.prefetch(AUTOTUNE)

    input_fn.manifest = manifest
    input_fn.files = files
    return input_fn


def find_corrupt_shard(files: list[str]) -> tuple[str, int, str] | None:
    """Read every shard fully; the first that fails: (path, good records, error)."""
    for path in files:
        count = 0
        try:
            for _ in tf.data.TFRecordDataset(path):
                count += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            return path, count, error.message.splitlines()[0]
    return None


@contextlib.contextmanager
def explain_data_errors(files: list[str]):
    """Turn tf.data's anonymous 'corrupted record' errors into ones naming the shard.

    TFRecord reading reports a corrupted record without its file; on such an error this
    scans the shards, finds the broken one and raises :class:`DataError` naming it.
    """
    try:
        yield
    except tf.errors.DataLossError as error:
        found = find_corrupt_shard(files)
        if found is None:
            raise
        path, count, detail = found
        raise DataError(
            f"shard {path} is corrupt after {count} good records ({detail}); convert the "
            "dataset again or remove the shard and its manifest entry."
        ) from error


def load_dataset(data_dir: str | os.PathLike, model: ModelConfig, data: DataConfig,
                 batch_size: int, **options) -> tf.data.Dataset:
    """The dataset of ``make_input_fn`` on one device (no strategy)."""
    return make_input_fn(data_dir, model, data, batch_size, **options)(None)
