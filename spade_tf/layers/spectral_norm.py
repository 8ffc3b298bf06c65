"""Spectral normalization with PyTorch's semantics, as the reference uses it.

Keras's own ``SpectralNormalization`` overwrites the kernel in place, passes no
gradient through sigma and does nothing at inference, so models trained with it
differ from the reference. This wrapper keeps the raw kernel (PyTorch's
``weight_orig``) and the power-iteration vectors ``u`` and ``v`` as weights:

- training: one power iteration updates ``u`` and ``v`` (no gradient through
  them), then the layer runs with ``kernel / sigma`` where ``sigma = u . (W v)``
  and the gradient flows through sigma into the kernel;
- inference: sigma comes from the stored ``u`` and ``v`` without iterating, so a
  converted reference checkpoint gives the reference's outputs.

``W`` is the kernel as a matrix in PyTorch's order, (out, in * kh * kw) with the
inputs flattened as (in, kh, kw), so ``u`` and ``v`` load unchanged from a
PyTorch checkpoint. The products with ``W`` are computed on the Keras kernel as it is,
reshaped to (kh * kw * in, out), with the small vector ``v`` permuted instead: no
transposed copy of the kernel (nor of its gradient) is made on each call.
"""

from __future__ import annotations

import keras
from keras import ops

_SUPPORTED = (keras.layers.Conv2D, keras.layers.Dense)


def _unit_normal(shape, dtype=None):
    """PyTorch's start vector: a normal sample scaled to unit length."""
    sample = keras.random.normal(shape, dtype=dtype)
    return sample / ops.maximum(ops.norm(sample), 1e-12)


def kernel_as_matrix(kernel):
    """Keras kernel (..., in, out) -> PyTorch's weight matrix (out, in * ...)."""
    rank = len(kernel.shape)
    order = [rank - 1, rank - 2, *range(rank - 2)]
    return ops.reshape(ops.transpose(kernel, order), (kernel.shape[-1], -1))


def _torch_to_keras_order(vector, kernel_shape):
    """A vector over PyTorch's input order (in, kh, kw) -> the Keras kernel's (kh, kw, in)."""
    spatial, inputs = tuple(kernel_shape[:-2]), kernel_shape[-2]
    if not spatial:
        return vector
    rank = len(spatial) + 1
    cube = ops.reshape(vector, (inputs, *spatial))
    return ops.reshape(ops.transpose(cube, [*range(1, rank), 0]), (-1,))


def _keras_to_torch_order(vector, kernel_shape):
    """The inverse of :func:`_torch_to_keras_order`."""
    spatial, inputs = tuple(kernel_shape[:-2]), kernel_shape[-2]
    if not spatial:
        return vector
    rank = len(spatial) + 1
    cube = ops.reshape(vector, (*spatial, inputs))
    return ops.reshape(ops.transpose(cube, [rank - 1, *range(rank - 1)]), (-1,))


@keras.saving.register_keras_serializable(package="spade_tf")
class SpectralNormalization(keras.layers.Wrapper):
    """Wraps a ``Conv2D`` or ``Dense`` layer and divides its kernel by sigma.

    Args:
        layer: the ``Conv2D`` or ``Dense`` layer to normalize.
        power_iterations: power iterations per training call (the reference: 1).
        epsilon: floor of the norms when normalizing ``u`` and ``v``.
    """

    def __init__(self, layer, power_iterations: int = 1, epsilon: float = 1e-12, **kwargs):
        super().__init__(layer, **kwargs)
        if not isinstance(layer, _SUPPORTED):
            raise TypeError(
                f"SpectralNormalization wraps Conv2D or Dense layers, got "
                f"{type(layer).__name__}; normalize the kernel of other layers yourself."
            )
        if power_iterations < 1:
            raise ValueError(f"power_iterations={power_iterations}: expected at least 1.")
        self.power_iterations = power_iterations
        self.epsilon = epsilon

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        kernel_shape = self.layer.kernel.shape
        rows = kernel_shape[-1]
        cols = 1
        for dim in kernel_shape[:-1]:
            cols *= dim
        # Every replica computes the same u and v from the same kernel, so no cross-replica
        # aggregation is needed when they are updated.
        self.u = self.add_weight(
            name="u", shape=(rows,), initializer=_unit_normal, trainable=False,
            aggregation="none", autocast=False,
        )
        self.v = self.add_weight(
            name="v", shape=(cols,), initializer=_unit_normal, trainable=False,
            aggregation="none", autocast=False,
        )
        super().build(input_shape)

    def _normalize(self, vector):
        return vector / ops.maximum(ops.norm(vector), self.epsilon)

    def normalized_kernel(self, training: bool = False):
        """The kernel divided by its spectral norm; in training, iterates first."""
        # Sigma is computed in float32 at least, also under mixed precision.
        dtype = keras.backend.result_type(self.layer.kernel.dtype, "float32")
        kernel = ops.cast(self.layer.kernel, dtype)
        shape = tuple(kernel.shape)
        # PyTorch's W is this matrix transposed, with its rows permuted (see module doc):
        # W v = matrix^T v_keras and W^T u = permuted(matrix u).
        matrix = ops.reshape(kernel, (-1, shape[-1]))
        u, v = ops.cast(self.u, dtype), ops.cast(self.v, dtype)
        if training:
            frozen = ops.stop_gradient(matrix)
            u_value = u
            for _ in range(self.power_iterations):
                v_value = self._normalize(
                    _keras_to_torch_order(ops.matmul(frozen, u_value), shape))
                u_value = self._normalize(
                    ops.matmul(_torch_to_keras_order(v_value, shape), frozen))
            self.u.assign(u_value)
            self.v.assign(v_value)
            u, v = u_value, v_value
        sigma = ops.sum(u * ops.matmul(_torch_to_keras_order(v, shape), matrix))
        return kernel / sigma

    def call(self, inputs, training=None):
        layer = self.layer
        kernel = ops.cast(self.normalized_kernel(bool(training)), inputs.dtype)
        if isinstance(layer, keras.layers.Conv2D):
            outputs = ops.conv(
                inputs, kernel, strides=layer.strides, padding=layer.padding,
                data_format=layer.data_format, dilation_rate=layer.dilation_rate,
            )
        else:
            outputs = ops.matmul(inputs, kernel)
        if layer.use_bias:
            outputs = outputs + ops.cast(layer.bias, inputs.dtype)
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"power_iterations": self.power_iterations, "epsilon": self.epsilon})
        return config
