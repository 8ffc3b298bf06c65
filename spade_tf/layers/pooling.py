"""The discriminator's downsampling between scales, with PyTorch's padding convention."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="spade_tf")
class AveragePoolExcludingPadding(keras.layers.Layer):
    """3x3 average pool, stride 2, 1 pixel of padding not counted in the mean.

    PyTorch's ``avg_pool2d(x, 3, 2, padding=1, count_include_pad=False)``; Keras's
    ``"same"`` pooling pads only at the end and places windows differently.
    """

    def call(self, inputs):
        padding = [[0, 0], [1, 1], [1, 1], [0, 0]]
        sums = ops.average_pool(ops.pad(inputs, padding), 3, 2, padding="valid")
        ones = ops.ones_like(inputs[..., :1])
        fraction = ops.average_pool(ops.pad(ones, padding), 3, 2, padding="valid")
        return sums / fraction

    def compute_output_shape(self, input_shape):
        def pooled(size):
            return None if size is None else (size - 1) // 2 + 1

        return (input_shape[0], pooled(input_shape[1]), pooled(input_shape[2]), input_shape[3])
