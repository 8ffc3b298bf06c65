"""A segmentation network the user gives, as a SavedModel, and label-id mappings.

The interface (docs/evaluation.md): a SavedModel whose ``serving_default`` signature takes
one image batch ``[N, H, W, 3]`` and returns one tensor, either

- per-class logits (or probabilities) ``[N, h, w, K]`` float: resized bilinearly to the
  label map's size, then the arg-max class is taken; or
- class ids ``[N, h, w]`` (or ``[N, h, w, 1]``) integer: resized nearest.

The input's dtype is read from the signature: uint8 images are fed as they are; float
images are fed in [0, 255] unless ``input_range`` says ``"0-1"`` or ``"minus1-1"``. The
predicted ids must be in the label maps' id space; where they are not (Cityscapes'
segmenters predict 19 "train ids" where the label maps hold 35 ids), a label mapping
(``read_label_mapping``) rewrites the label maps into the segmenter's ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from spade_tf.evaluation.errors import EvaluationError
from spade_tf.layout import SAVED_MODEL_FILE

SIGNATURE = "serving_default"
# Float input ranges: name -> (scale, offset) applied to [0, 255] pixels. No name starts
# with "-": argparse would read "-1-1" as an option.
INPUT_RANGES = {"0-255": (1.0, 0.0), "0-1": (1.0 / 255.0, 0.0), "minus1-1": (1.0 / 127.5, -1.0)}


class SegmenterError(EvaluationError):
    """The segmentation SavedModel is missing or does not follow the interface."""


class Segmenter:
    """A segmentation SavedModel: ``segmenter(uint8 images, (H, W))`` -> int64 class ids."""

    def __init__(self, path: str | os.PathLike, input_range: str = "0-255") -> None:
        import tensorflow as tf

        self.path = Path(path)
        if input_range not in INPUT_RANGES:
            raise SegmenterError(f"input range {input_range!r} is unknown: expected one of "
                                 f"{list(INPUT_RANGES)}.")
        if not (self.path / SAVED_MODEL_FILE).is_file():
            raise SegmenterError(f"{self.path} is not a SavedModel folder (no saved_model.pb in "
                                 "it); export the segmenter with tf.saved_model.save.")
        self._loaded = tf.saved_model.load(str(self.path))  # keeps the signature's variables
        signatures = dict(self._loaded.signatures)
        if SIGNATURE not in signatures:
            raise SegmenterError(f"{self.path} has no {SIGNATURE!r} signature (it has "
                                 f"{sorted(signatures) or 'none'}); save the segmenter with "
                                 f"signatures={{'{SIGNATURE}': ...}}.")
        self._function = signatures[SIGNATURE]
        _, inputs = self._function.structured_input_signature
        if len(inputs) != 1:
            raise SegmenterError(f"the {SIGNATURE} signature of {self.path} takes inputs "
                                 f"{sorted(inputs)}; expected exactly one image batch.")
        (self.input_name, spec), = inputs.items()
        self.input_dtype = spec.dtype
        self.input_shape = spec.shape
        if not (spec.dtype == tf.uint8 or spec.dtype.is_floating):
            raise SegmenterError(f"the segmenter's input {self.input_name!r} is {spec.dtype.name}; "
                                 "expected uint8 or float images.")
        if spec.shape.rank not in (None, 4) or spec.shape.rank == 4 and spec.shape[-1] not in (
                None, 3):
            raise SegmenterError(f"the segmenter's input {self.input_name!r} has shape "
                                 f"{spec.shape}; expected RGB images [N, H, W, 3].")
        if spec.dtype == tf.uint8 and input_range != "0-255":
            raise SegmenterError(f"the segmenter takes uint8 images, which are always 0-255; "
                                 f"the input range {input_range!r} only applies to float inputs.")
        self.input_range = input_range
        outputs = self._function.structured_outputs
        if len(outputs) != 1:
            raise SegmenterError(f"the {SIGNATURE} signature of {self.path} returns "
                                 f"{sorted(outputs)}; expected one tensor (logits or class ids).")
        (self.output_name,) = outputs

    def __call__(self, images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Class ids int64 ``[N, size]`` of uint8 ``[N, H, W, 3]`` images."""
        import tensorflow as tf

        height, width = images.shape[1:3]
        fixed = self.input_shape.rank == 4 and (
            self.input_shape[1] not in (None, height) or self.input_shape[2] not in (None, width))
        if fixed:
            raise SegmenterError(f"the segmenter takes {self.input_shape[1]}x"
                                 f"{self.input_shape[2]} images; these are {height}x{width}.")
        pixels = tf.constant(images)
        if self.input_dtype != tf.uint8:
            scale, offset = INPUT_RANGES[self.input_range]
            pixels = tf.cast(tf.cast(pixels, tf.float32) * scale + offset, self.input_dtype)
        output = self._function(**{self.input_name: pixels})[self.output_name]
        return _to_class_ids(output, images.shape[0], size)


def _to_class_ids(output, batch: int, size: tuple[int, int]) -> np.ndarray:
    import tensorflow as tf

    shape = tuple(output.shape)
    if output.dtype.is_integer and len(shape) == 4 and shape[-1] == 1:
        output = output[..., 0]
        shape = shape[:-1]
    if shape[:1] != (batch,):
        raise SegmenterError(f"the segmenter returned shape {shape} for {batch} images.")
    if output.dtype.is_floating and len(shape) == 4:
        # Interpolate the scores, not the ids: arg-max after resizing.
        logits = tf.image.resize(tf.cast(output, tf.float32), size, method="bilinear")
        return tf.argmax(logits, axis=-1).numpy().astype(np.int64)
    if output.dtype.is_integer and len(shape) == 3:
        ids = tf.image.resize(output[..., None], size, method="nearest")[..., 0]
        return ids.numpy().astype(np.int64)
    raise SegmenterError(f"the segmenter returned {output.dtype.name} {shape}; expected float "
                         "logits [N, h, w, classes] or integer class ids [N, h, w].")


def read_label_mapping(path: str | os.PathLike) -> dict[int, int]:
    """A JSON object ``{"label id": evaluation id, ...}``; unlisted label ids are ignored."""
    try:
        values = json.loads(Path(path).read_text())
        mapping = {int(key): int(value) for key, value in values.items()}
    except (OSError, ValueError, AttributeError, TypeError) as error:
        raise EvaluationError(f"cannot read the label mapping {path}: {error}. Expected a JSON "
                              'object of label id -> segmenter class id, e.g. {"7": 0, "8": 1}.'
                              ) from None
    if any(key < 0 or value < 0 for key, value in mapping.items()):
        raise EvaluationError(f"the label mapping {path} has negative ids; ids start at 0.")
    return mapping


def apply_label_mapping(labels: np.ndarray, mapping: dict[int, int],
                        ignore_id: int) -> np.ndarray:
    """Label ids rewritten through ``mapping``; ids it does not list become ``ignore_id``."""
    labels = np.asarray(labels)
    size = max(int(labels.max(initial=0)), max(mapping, default=0)) + 1
    table = np.full(size, ignore_id, dtype=np.int64)
    for key, value in mapping.items():
        table[key] = value
    return table[labels.astype(np.int64)]
