"""Batch normalization without learned scale and offset, with PyTorch's semantics.

``ParameterFreeBatchNorm`` is a drop-in replacement for
``keras.layers.BatchNormalization(center=False, scale=False)`` that behaves like
``torch.nn.BatchNorm2d(C, affine=False)`` (and ``SyncBatchNorm``):

* the batch is normalized with the biased variance, but ``moving_variance`` is updated
  with the unbiased one (``sum of squared deviations / (n - 1)``);
* ``momentum`` is PyTorch's: ``running = (1 - momentum) * running + momentum * batch``;
* the statistics are computed in two passes (no ``E[x^2] - E[x]^2``), with the rounding
  of the first-pass mean compensated, so nearly constant channels stay accurate;
* with ``synchronized=True`` inside a ``tf.distribute`` replica context, sums and counts
  are all-reduced, so the statistics are those of the global batch. Under JAX's
  ``keras.distribution.DataParallel`` the batch is one sharded array, so the statistics
  are the global batch's whatever ``synchronized`` says; PyTorch: the local batch
  (:mod:`spade_tf.backend`).

It keeps Keras BatchNormalization's variables (``moving_mean``, ``moving_variance``,
shape ``[C]``, created in ``build``, in that order), so checkpoints and ``.keras``
files written with the Keras layer load into it.
"""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.backend import all_reduce_sum, custom_gradient

# NHWC: statistics per channel over batch, height and width.
_REDUCTION_AXES = (0, 1, 2)


def _pixel_count(x, dtype: str):
    """Values per channel: a constant when the shape is known (always, but in TF graphs)."""
    batch, height, width = ops.shape(x)[:3]
    if all(isinstance(side, int) for side in (batch, height, width)):
        return ops.convert_to_tensor(batch * height * width, dtype=dtype)
    return ops.cast(ops.prod(ops.shape(x)[:3]), dtype)


@keras.saving.register_keras_serializable(package="spade_tf")
class ParameterFreeBatchNorm(keras.layers.Layer):
    """Per-channel batch normalization of NHWC tensors, PyTorch-faithful, no scale/offset.

    Training (``training=True`` and ``layer.trainable``, the same rule as Keras
    BatchNormalization) normalizes with the batch statistics and updates the moving
    ones; otherwise the moving statistics are used. Statistics are computed in float32
    (float64 for float64 inputs) whatever the input dtype; the output has the layer's
    compute dtype.

    With a single value per channel in the (global) batch, PyTorch raises. Here the
    output is zero (the biased variance is 0), ``moving_mean`` is updated as usual and
    ``moving_variance`` is left unchanged, because the unbiased variance is undefined
    and pulling the moving variance towards 0 would blow up inference.

    Args:
        synchronized: all-reduce the statistics across replicas (``SyncBatchNorm``).
        momentum: PyTorch's momentum, the weight of the new batch statistic (0.1).
        epsilon: added to the variance before the square root.
    """

    def __init__(self, synchronized: bool = False, momentum: float = 0.1,
                 epsilon: float = 1e-5, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum={momentum}: expected PyTorch's convention, in [0, 1].")
        if epsilon <= 0.0:
            raise ValueError(f"epsilon={epsilon}: expected a positive number.")
        self.synchronized = bool(synchronized)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.moving_mean = None
        self.moving_variance = None

    def build(self, input_shape) -> None:
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"input_shape={input_shape}: expected NHWC with known channels.")
        channels = int(input_shape[-1])
        # Same names, shapes, order, initializers and aggregation ("none") as Keras
        # BatchNormalization(center=False, scale=False): its checkpoints load here.
        self.moving_mean = self.add_weight(
            shape=(channels,), name="moving_mean", initializer="zeros",
            trainable=False, autocast=False,
        )
        self.moving_variance = self.add_weight(
            shape=(channels,), name="moving_variance", initializer="ones",
            trainable=False, autocast=False,
        )

    def call(self, inputs, training=None):
        # Upcast like Keras BN does: half-precision statistics overflow and lose bits.
        stats_dtype = "float64" if keras.backend.standardize_dtype(
            inputs.dtype) == "float64" else "float32"
        x = ops.cast(inputs, stats_dtype)
        if training and self.trainable:
            outputs = self._train(x)
        else:
            mean = ops.cast(self.moving_mean, stats_dtype)
            variance = ops.cast(self.moving_variance, stats_dtype)
            outputs = (x - mean) * ops.rsqrt(variance + self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def _train(self, x):
        outputs, mean, squared_deviations, count = self._normalize_batch(x)
        self._update_moving_statistics(mean, squared_deviations, count)
        return outputs

    def _normalize_batch(self, x):
        """(normalized x, batch mean, sum of squared deviations, count); the statistics
        come without gradient.

        On TensorFlow the gradient is batch norm's closed form, ``(g - mean(g) - y *
        mean(g * y)) / std`` with the means over the (global) batch: the same function as
        differentiating the two-pass computation, in two reductions and two elementwise
        passes, keeping only ``y`` and ``1 / std`` for the backward pass. JAX and PyTorch
        differentiate the two-pass computation itself.
        """
        outputs, mean, squared_deviations, count = custom_gradient(
            self._normalize_with_gradient)(x)
        statistics = (mean, squared_deviations, count)
        return (outputs, *(ops.stop_gradient(value) for value in statistics))

    def _normalize_with_gradient(self, x):
        dtype = keras.backend.standardize_dtype(x.dtype)
        # Pass 1: the mean from a sum and a count (one all-reduce of [sum, count]).
        count = _pixel_count(x, dtype)
        packed = ops.concatenate([ops.sum(x, axis=_REDUCTION_AXES), count[None]], axis=0)
        packed = all_reduce_sum(packed, self.synchronized)
        total, count = packed[:-1], packed[-1]
        rough_mean = total / count
        # Pass 2: deviations from the rounded mean. x - rough_mean is nearly exact for a
        # nearly constant channel; their mean (`correction`) is the rounding error of
        # rough_mean, so mean = rough_mean + correction carries more than float32 bits.
        deviation = x - rough_mean
        sums = ops.stack([ops.sum(deviation, axis=_REDUCTION_AXES),
                          ops.sum(ops.square(deviation), axis=_REDUCTION_AXES)])
        sums = all_reduce_sum(sums, self.synchronized)
        correction = sums[0] / count
        # sum((x - mean)^2) = sum(deviation^2) - count * correction^2; the subtracted
        # term is tiny (correction is a rounding error), so no cancellation.
        squared_deviations = ops.maximum(sums[1] - count * ops.square(correction), 0.0)
        variance = squared_deviations / count
        inverse_std = ops.rsqrt(variance + self.epsilon)
        outputs = (deviation - correction) * inverse_std

        def gradient(upstream, *_statistics_gradients):
            sums = ops.stack([ops.sum(upstream, axis=_REDUCTION_AXES),
                              ops.sum(upstream * outputs, axis=_REDUCTION_AXES)])
            sums = all_reduce_sum(sums, self.synchronized) / count
            return (upstream - sums[0] - outputs * sums[1]) * inverse_std

        return (outputs, rough_mean + correction, squared_deviations, count), gradient

    def _update_moving_statistics(self, mean, squared_deviations, count) -> None:
        momentum = self.momentum
        var_dtype = self.moving_mean.dtype
        mean = ops.cast(mean, var_dtype)
        # Unbiased variance as PyTorch stores it; undefined for count == 1 (see class doc).
        unbiased = ops.cast(squared_deviations / ops.maximum(count - 1.0, 1.0), var_dtype)
        old_variance = ops.convert_to_tensor(self.moving_variance)
        new_variance = (1.0 - momentum) * old_variance + momentum * unbiased
        self.moving_mean.assign((1.0 - momentum) * self.moving_mean + momentum * mean)
        self.moving_variance.assign(ops.where(count > 1.0, new_variance, old_variance))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "synchronized": self.synchronized,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        })
        return config


@keras.saving.register_keras_serializable(package="spade_tf")
class BatchNormalization(ParameterFreeBatchNorm):
    """``ParameterFreeBatchNorm`` under the class name Keras uses as its weights key.

    In a functional model, Keras's weights store (``.keras``, ``.weights.h5``) files each
    layer under the snake-cased class name (``layers/batch_normalization_1``), not the
    layer name; an attribute-held layer (SPADE's ``param_free_norm``) is filed under the
    attribute name. Built by code in a functional model (the discriminator's and
    encoder's norms), the layer must therefore be called ``BatchNormalization`` to read
    files written with ``keras.layers.BatchNormalization``.
    """
