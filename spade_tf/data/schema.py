"""The one TFRecord schema of spade-tf: what a training example holds on disk.

Each record is a ``tf.train.Example`` with:

- ``image/encoded``: the photo's bytes exactly as stored in the dataset (JPEG or PNG);
- ``label/encoded``: the label map as a 16-bit grayscale PNG (lossless), holding the
  dataset's canonical ids: ``0..num_classes-1`` plus the don't-care id when the dataset
  has one;
- ``instance/encoded``: the instance map as a 16-bit PNG, or empty bytes when the
  dataset has none;
- ``height``, ``width``: the photo's size (label and instance maps have the same);
- ``key``: the example's name (its path relative to the dataset root).

``manifest.json`` beside the shards (see ``MANIFEST_FILE``) records the schema version,
the class count, the don't-care rule and the shard list.
"""

from __future__ import annotations

import tensorflow as tf

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
SHARD_SUFFIX = ".tfrecord"

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "label/encoded": tf.io.FixedLenFeature([], tf.string),
    "instance/encoded": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "key": tf.io.FixedLenFeature([], tf.string),
}


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def encode_example(image_bytes: bytes, label_png: bytes, instance_png: bytes | None,
                   height: int, width: int, key: str) -> bytes:
    """Serialize one example (see the module docstring for the fields)."""
    features = {
        "image/encoded": _bytes(image_bytes),
        "label/encoded": _bytes(label_png),
        "instance/encoded": _bytes(instance_png or b""),
        "height": _int(height),
        "width": _int(width),
        "key": _bytes(key.encode("utf-8")),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def parse_example(serialized, decode_instances: bool = True) -> dict:
    """Serialized example -> decoded tensors.

    Returns ``image`` uint8 [H, W, 3], ``label`` int32 [H, W], ``instance`` int32
    [H, W] (zeros when the record has no instance map and ``decode_instances``),
    and ``key`` (string).
    """
    fields = tf.io.parse_single_example(serialized, FEATURES)
    height = tf.cast(fields["height"], tf.int32)
    width = tf.cast(fields["width"], tf.int32)
    image = tf.io.decode_image(fields["image/encoded"], channels=3, dtype=tf.uint8,
                               expand_animations=False)
    image = tf.ensure_shape(image, [None, None, 3])
    label = tf.cast(tf.io.decode_png(fields["label/encoded"], channels=1, dtype=tf.uint16)[..., 0],
                    tf.int32)
    parsed = {"image": image, "label": label, "key": fields["key"]}
    if decode_instances:
        encoded = fields["instance/encoded"]
        parsed["instance"] = tf.cond(
            tf.strings.length(encoded) > 0,
            lambda: tf.cast(tf.io.decode_png(encoded, channels=1, dtype=tf.uint16)[..., 0],
                            tf.int32),
            lambda: tf.zeros([height, width], tf.int32),
        )
    checks = [
        tf.debugging.assert_equal(tf.shape(image)[:2], tf.stack([height, width]),
                                  message="image size differs from the record's height/width"),
        tf.debugging.assert_equal(tf.shape(label), tf.stack([height, width]),
                                  message="label map size differs from the image size"),
    ]
    with tf.control_dependencies(checks):
        parsed["image"] = tf.identity(parsed["image"])
    return parsed


def shard_name(prefix: str, index: int, count: int) -> str:
    """``train-00003-of-00016.tfrecord``."""
    return f"{prefix}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"
