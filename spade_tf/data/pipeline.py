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
import re
from collections.abc import Callable

import tensorflow as tf

from spade_tf.config import DataConfig, ModelConfig
from spade_tf.data.manifest import DataError, check_shard_files, read_manifest
from spade_tf.data.schema import parse_example
from spade_tf.errors import readable_tf_message
from spade_tf.inference_rules import photo_to_unit
from spade_tf.layers.semantic import check_label_space

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


def decode_record(record, model: ModelConfig, data: DataConfig, seed, augment: bool) -> dict:
    """A serialized record -> ``key``, ``photo`` (float 0..255), ``label`` and ``instance``
    (int32) at the model's image size; label ids outside the model's are an error.

    ``seed`` (int32 [2]) chooses the crop and flip when ``augment``; without it the crop
    is centred and nothing is flipped (evaluation).
    """
    example = parse_example(record)
    example["label"] = check_label_space(example["label"], model.label_space)
    photo, label, instance = preprocess(example, seed, data, model.image_size, augment)
    return {"key": example["key"], "photo": photo, "label": label, "instance": instance}


def _to_model_inputs(decoded: dict, use_instances: bool) -> dict:
    element = {"label": decoded["label"], "image": photo_to_unit(decoded["photo"])}
    if use_instances:
        element["instance"] = decoded["instance"]
    return element


def _stateless_permutation(values, seed):
    order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(values)[0]), seed=seed)
    return tf.gather(values, order)


def _block_shuffle(records: tf.data.Dataset, block: int, epoch_seed) -> tf.data.Dataset:
    """Shuffle within consecutive blocks of ``block`` records, seeded per epoch and block.

    Stateless, so the order is a function of the seed and the epoch alone (resumable),
    also when a global TensorFlow seed is set (``Dataset.shuffle`` with a tensor seed
    fails then).
    """
    def shuffled(index, chunk):
        seed = tf.stack([epoch_seed, index])
        return tf.data.Dataset.from_tensor_slices(_stateless_permutation(chunk, seed))

    return records.batch(block).enumerate().flat_map(shuffled)


def _pipeline_files(manifest, files: list[str], pipelines: int, pipeline_id: int,
                    records_needed: int) -> tuple[list[str], bool]:
    """This pipeline's files, and whether records still need sharding.

    Whole shards per pipeline when every pipeline's shards hold enough records for an
    epoch; otherwise every pipeline reads all shards and keeps every n-th record.
    """
    if pipelines == 1:
        return files, False
    counts = [sum(shard.num_examples for shard in manifest.shards[p::pipelines])
              for p in range(pipelines)]
    if len(files) >= pipelines and min(counts) >= records_needed:
        return files[pipeline_id::pipelines], False
    return files, True


def make_input_fn(
    data_dir: str | os.PathLike,
    model: ModelConfig,
    data: DataConfig,
    global_batch_size: int,
    augment: bool = True,
    shuffle: bool = True,
    seed: int = 0,
    start_epoch: int = 0,
    num_epochs: int | None = None,
    skip_steps: int = 0,
    drop_remainder: bool = True,
) -> Callable[[tf.distribute.InputContext | None], tf.data.Dataset]:
    """An ``input_fn(input_context)`` over the shards in ``data_dir``.

    The dataset runs ``num_epochs`` epochs from ``start_epoch``; by default (None) it
    repeats, epoch after epoch, which is what ``fit(dataset, epochs=E,
    steps_per_epoch=input_fn.steps_per_epoch)`` expects: each Keras epoch then takes the
    next data epoch (one pass that ran dry would leave later epochs without batches).
    For one pass (reading, inspecting, evaluating), pass ``num_epochs=1`` or use
    :func:`load_dataset`. Each
    epoch's order and augmentation depend only on ``seed`` and the epoch number, and
    with ``drop_remainder`` every epoch is exactly ``input_fn.steps_per_epoch`` global
    batches, so training can resume at a data position: ``skip_steps`` global batches
    of the first epoch are skipped before decoding. Checks up front that the shards
    exist with their recorded sizes and that the data's label settings fit the model.
    """
    manifest = read_manifest(data_dir)
    manifest.check_label_space(model.label_space)
    files = [str(p) for p in check_shard_files(data_dir, manifest)]
    steps_per_epoch = manifest.num_examples // global_batch_size
    if drop_remainder and steps_per_epoch == 0:
        raise DataError(f"{data_dir} has {manifest.num_examples} examples, fewer than one "
                        f"global batch of {global_batch_size}.")

    def input_fn(context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        pipelines = context.num_input_pipelines if context else 1
        pipeline_id = context.input_pipeline_id if context else 0
        replica_batch = context.get_per_replica_batch_size(global_batch_size) if context \
            else global_batch_size
        pipeline_batch = global_batch_size // pipelines
        epoch_records = steps_per_epoch * pipeline_batch if drop_remainder else -1
        my_files, shard_records = _pipeline_files(manifest, files, pipelines, pipeline_id,
                                                  max(epoch_records, 0))

        def one_epoch(epoch):
            epoch_seed = tf.cast(seed, tf.int64) * 1_000_003 + epoch
            names = tf.constant(my_files)
            if shuffle:
                names = _stateless_permutation(names, tf.stack([epoch_seed, -1]))
            records = tf.data.Dataset.from_tensor_slices(names).interleave(
                tf.data.TFRecordDataset, cycle_length=min(data.num_parallel_reads, len(files)),
                num_parallel_calls=AUTOTUNE, deterministic=True)
            if shard_records:
                records = records.shard(pipelines, pipeline_id)
            if shuffle and data.shuffle_buffer > 1:
                records = _block_shuffle(records, data.shuffle_buffer, epoch_seed)
            records = records.take(epoch_records)
            skipped = tf.where(epoch == start_epoch,
                               tf.constant(skip_steps * pipeline_batch, tf.int64),
                               tf.constant(0, tf.int64))
            # (augmentation seed, record) pairs, indexed within the epoch.
            return records.enumerate().skip(skipped).map(
                lambda index, record: (record, tf.stack([epoch_seed, index])))

        epochs = tf.data.Dataset.range(start_epoch, start_epoch + num_epochs) \
            if num_epochs is not None else tf.data.Dataset.counter(start_epoch)

        def load(record, example_seed):
            decoded = decode_record(record, model, data, tf.cast(example_seed, tf.int32), augment)
            return _to_model_inputs(decoded, model.use_instance_edges)

        dataset = epochs.flat_map(one_epoch)
        dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
        dataset = dataset.batch(replica_batch, drop_remainder=drop_remainder)
        return dataset.prefetch(AUTOTUNE)

    input_fn.manifest = manifest
    input_fn.files = files
    input_fn.steps_per_epoch = steps_per_epoch
    return input_fn


def record_error_text(message: str) -> str:
    """TFRecord reading's error as words: no graph internals (``{{function_node
    __wrapped__IteratorGetNext...}}``, ``[Op:IteratorGetNext]``), offsets called bytes,
    and not TensorFlow's unmatched quote (``truncated record at 0' failed with Read less
    bytes than requested``)."""
    text = readable_tf_message(message).splitlines()[0]
    text = re.sub(r"^(truncated record at \d+)' failed with Read less bytes than requested",
                  r"\1: the file ends inside it", text)
    text = text.replace("' failed with ", ": ")
    return re.sub(r"\b(truncated|corrupted) record at (\d+)", r"\1 record at byte \2", text)


def find_corrupt_shard(files: list[str]) -> tuple[str, int, str] | None:
    """Read every shard fully; the first that fails: (path, good records, error)."""
    for path in files:
        count = 0
        try:
            for _ in tf.data.TFRecordDataset(path):
                count += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            return path, count, record_error_text(error.message)
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
        good = f"{count} good record{'' if count == 1 else 's'}"
        raise DataError(
            f"shard {path} is corrupt after {good} ({detail}); convert the dataset again or "
            "remove the shard and its manifest entry."
        ) from error


def load_dataset(data_dir: str | os.PathLike, model: ModelConfig, data: DataConfig,
                 batch_size: int, num_epochs: int | None = 1, **options) -> tf.data.Dataset:
    """The dataset of ``make_input_fn`` on one device (no strategy), for reading and
    inspection: one pass by default (``num_epochs=None`` repeats, as for ``fit``)."""
    return make_input_fn(data_dir, model, data, batch_size, num_epochs=num_epochs,
                         **options)(None)
