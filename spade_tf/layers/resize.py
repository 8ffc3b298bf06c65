"""Resizing with the reference's conventions.

PyTorch's ``F.interpolate(mode="nearest")`` (the legacy nearest the reference
uses for label maps) reads source index ``floor(i * in / out)``, computed in
float32. ``tf.image.resize(method="nearest")`` uses half-pixel centres instead
and picks a different pixel almost everywhere when downsampling, so label maps
are resized here with an explicit gather.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def legacy_nearest_indices(in_size, out_size):
    """Source indices ``min(floor(i * (in / out)), in - 1)`` in float32, as PyTorch does.

    Known sizes give a constant (computed with NumPy in float32: the same bits);
    sizes known only when a TF graph runs are computed in the graph.
    """
    if isinstance(in_size, int) and isinstance(out_size, int):
        scale = np.float32(in_size) / np.float32(out_size)
        index = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int32)
        return ops.convert_to_tensor(np.minimum(index, in_size - 1))
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    index = ops.floor(ops.cast(ops.arange(out_size), "float32") * scale)
    return ops.minimum(ops.cast(index, "int32"), ops.cast(in_size, "int32") - 1)


def legacy_nearest_resize(images, size):
    """Resize NHWC ``images`` to ``size`` = (height, width) with legacy nearest."""
    height, width = size
    if tuple(images.shape[1:3]) == (height, width) and all(
            isinstance(side, int) for side in (height, width)):
        # The same size reads every pixel where it is: no copy (a full-size semantic map
        # is large, and every SPADE at full resolution would keep its own).
        return images
    shape = ops.shape(images)
    rows = legacy_nearest_indices(shape[1], height)
    cols = legacy_nearest_indices(shape[2], width)
    return ops.take(ops.take(images, rows, axis=1), cols, axis=2)


@keras.saving.register_keras_serializable(package="spade_tf")
class LegacyNearestResize(keras.layers.Layer):
    """Resizes NHWC maps to a fixed (height, width) with PyTorch's legacy nearest."""

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.height = height
        self.width = width

    def call(self, inputs):
        return legacy_nearest_resize(inputs, (self.height, self.width))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"height": self.height, "width": self.width})
        return config
