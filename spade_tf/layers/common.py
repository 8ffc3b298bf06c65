"""Pieces the SPADE layers and the networks share: the reference's conv, norms, activation.

- ``reference_initializer``: PyTorch's ``xavier_normal_`` with gain 0.02, on every
  conv and dense kernel;
- ``reference_conv``: a Conv2D initialised that way, zero biases;
- ``parameter_free_norm``: the normalization without learned scale and offset
  (batch or synchronized batch with PyTorch's statistics, or instance);
- ``maybe_spectral``: spectral normalization with PyTorch's semantics when asked;
- ``LEAKY_RELU_SLOPE``: 0.2 everywhere in the reference;
- ``leaky_relu``, ``LeakyReLU`` and ``leaky_relu_saving_output``: that activation,
  differentiated from its output in training (on TensorFlow; :mod:`spade_tf.backend`);
"""

from __future__ import annotations

import keras

from spade_tf.backend import leaky_relu_saving_output
from spade_tf.geometry import NORM_TYPES
from spade_tf.layers.batch_norm import BatchNormalization
from spade_tf.layers.spectral_norm import SpectralNormalization

LEAKY_RELU_SLOPE = 0.2
REFERENCE_INIT_GAIN = 0.02


def reference_initializer(gain: float = REFERENCE_INIT_GAIN) -> keras.initializers.Initializer:
    """Untruncated normal with std ``gain * sqrt(2 / (fan_in + fan_out))``.

    That is ``VarianceScaling(scale=gain**2, mode="fan_avg")`` with an untruncated
    normal (Keras's ``GlorotNormal`` truncates, PyTorch's xavier normal does not).
    Keras computes fans from its (kh, kw, in, out) layout exactly as PyTorch does
    from (out, in, kh, kw). Each layer needs its own instance: Keras initializers
    with an unset seed draw the same values on every call.
    """
    return keras.initializers.VarianceScaling(
        scale=gain**2, mode="fan_avg", distribution="untruncated_normal"
    )


def leaky_relu(x, training, negative_slope: float = LEAKY_RELU_SLOPE):
    """Leaky ReLU; a training call differentiates it from its output
    (:func:`leaky_relu_saving_output`: less memory, fusable graphs), inference graphs
    (exports) keep the plain op."""
    if training:
        return leaky_relu_saving_output(x, negative_slope)
    return keras.ops.leaky_relu(x, negative_slope=negative_slope)


@keras.saving.register_keras_serializable(package="spade_tf")
class LeakyReLU(keras.layers.LeakyReLU):
    """``keras.layers.LeakyReLU`` differentiated from its output when training
    (:func:`leaky_relu`): the same function and configuration."""

    def call(self, inputs, training=None):
        return leaky_relu(inputs, training, self.negative_slope)


NORM_EPSILON = 1e-5
# PyTorch's convention (the reference's 0.1): the weight of the new batch statistic.
BATCH_NORM_MOMENTUM = 0.1


def check_norm_type(norm_type: str) -> None:
    if norm_type not in NORM_TYPES:
        raise ValueError(
            f"norm_type={norm_type!r} is unknown: expected one of {list(NORM_TYPES)}."
        )


def _norm_dtype(keeps_statistics_in_float32: bool = False) -> str | None:
    """The norm's dtype policy under a half-precision global policy; None: inherit.

    Float32 for a norm that computes in its dtype (statistics stay exact). A norm that
    computes its statistics in float32 itself (``keeps_statistics_in_float32``) takes
    the mixed policy instead: float32 variables, half-precision output (no float32 copy
    of each activation between the norm and the next layer).
    """
    compute = keras.mixed_precision.dtype_policy().compute_dtype
    if compute not in ("float16", "bfloat16"):
        return None
    return f"mixed_{compute}" if keeps_statistics_in_float32 else "float32"


def parameter_free_norm(norm_type: str, name: str) -> keras.layers.Layer:
    """The normalization without learned scale and offset used in SPADE and D/E.

    Under a half-precision policy both compute the statistics in float32; the batch
    norms return the policy's compute dtype, instance norm returns float32.
    """
    check_norm_type(norm_type)
    if norm_type in ("sync_batch", "batch"):
        # PyTorch's statistics (two-pass, unbiased running variance, one all-reduce per
        # pass across replicas), not keras.layers.BatchNormalization's: see batch_norm.py.
        return BatchNormalization(
            synchronized=norm_type == "sync_batch", momentum=BATCH_NORM_MOMENTUM,
            epsilon=NORM_EPSILON, name=name,
            dtype=_norm_dtype(keeps_statistics_in_float32=True),
        )
    return keras.layers.GroupNormalization(
        groups=-1, center=False, scale=False, epsilon=NORM_EPSILON, name=name,
        dtype=_norm_dtype(),
    )


def reference_conv(filters: int, kernel_size: int, name: str, use_bias: bool = True,
                   strides: int = 1, padding: str = "same") -> keras.layers.Conv2D:
    """A Conv2D initialised as the reference initialises every conv."""
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
        kernel_initializer=reference_initializer(), bias_initializer="zeros", name=name,
    )


def maybe_spectral(layer: keras.layers.Layer, use_spectral_norm: bool) -> keras.layers.Layer:
    """Wrap ``layer`` in spectral normalization (under the same name) when asked."""
    if not use_spectral_norm:
        return layer
    return SpectralNormalization(layer, name=layer.name)
