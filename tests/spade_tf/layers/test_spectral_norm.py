import keras
import numpy as np
import pytest
import tensorflow as tf
from support.contract import check_layer_contract

from spade_tf.layers import SpectralNormalization
from spade_tf.layers.spectral_norm import kernel_as_matrix


def _conv(kernel: np.ndarray, bias: bool = True) -> SpectralNormalization:
    layer = SpectralNormalization(keras.layers.Conv2D(kernel.shape[-1], kernel.shape[0],
                                                      padding="same", use_bias=bias))
    layer.build((None, 6, 6, kernel.shape[2]))
    layer.layer.kernel.assign(kernel)
    return layer


def test_matrix_is_pytorchs_out_by_in_kh_kw():
    kernel = np.random.randn(2, 3, 4, 5).astype(np.float32)  # (kh, kw, in, out)
    torch_weight = kernel.transpose(3, 2, 0, 1)  # (out, in, kh, kw)
    np.testing.assert_array_equal(kernel_as_matrix(tf.constant(kernel)).numpy(),
                                  torch_weight.reshape(5, -1))


def test_converges_to_the_largest_singular_value():
    kernel = np.random.randn(3, 3, 4, 6).astype(np.float32)
    layer = _conv(kernel)
    x = tf.random.normal((1, 6, 6, 4))
    for _ in range(60):
        layer(x, training=True)
    sigma_max = np.linalg.svd(kernel.transpose(3, 2, 0, 1).reshape(6, -1), compute_uv=False)[0]
    normalized = layer.normalized_kernel(training=False).numpy()
    np.testing.assert_allclose(kernel / normalized, sigma_max, rtol=1e-4)


def test_training_call_iterates_once_and_inference_uses_stored_vectors():
    kernel = np.random.randn(3, 3, 2, 4).astype(np.float32)
    layer = _conv(kernel)
    u0, v0 = layer.u.numpy(), layer.v.numpy()
    matrix = kernel.transpose(3, 2, 0, 1).reshape(4, -1)
    x = tf.random.normal((2, 6, 6, 2))

    inference = layer(x, training=False).numpy()
    np.testing.assert_array_equal(layer.u.numpy(), u0)
    np.testing.assert_array_equal(layer.v.numpy(), v0)
    sigma0 = u0 @ matrix @ v0
    expected = tf.nn.conv2d(x, kernel / sigma0, 1, "SAME") + layer.layer.bias
    # Unconverged u, v: sigma is a sum with cancellation, its float32 rounding (another
    # summation order here) scaled by how much cancels; an iterated sigma is far off.
    cancellation = np.abs(u0) @ np.abs(matrix) @ np.abs(v0) / abs(sigma0)
    np.testing.assert_allclose(inference, expected.numpy(), rtol=1e-6 * max(1.0, cancellation),
                               atol=1e-5)

    layer(x, training=True)
    v1 = matrix.T @ u0
    v1 /= np.linalg.norm(v1)
    u1 = matrix @ v1
    u1 /= np.linalg.norm(u1)
    np.testing.assert_allclose(layer.v.numpy(), v1, atol=1e-5)
    np.testing.assert_allclose(layer.u.numpy(), u1, atol=1e-5)


def test_gradient_flows_through_sigma():
    """The tape's gradient equals finite differences of W -> f(W / sigma(W))."""
    kernel = np.random.randn(1, 1, 3, 2).astype(np.float64)
    layer = SpectralNormalization(keras.layers.Dense(2, use_bias=False, dtype="float64"),
                                  dtype="float64")
    layer.build((None, 3))
    layer.layer.kernel.assign(kernel[0, 0])
    x = tf.constant(np.random.randn(4, 3))
    u, v = layer.u.numpy().astype(np.float64), layer.v.numpy().astype(np.float64)

    def loss_of(kernel_2d):
        sigma = u @ kernel_2d.T @ v
        return np.sum(np.tanh(x.numpy() @ (kernel_2d / sigma)))

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.tanh(layer(x, training=False)))
    grad = tape.gradient(loss, layer.layer.kernel).numpy()
    numeric = np.zeros_like(grad)
    for index in np.ndindex(grad.shape):
        step = np.zeros_like(grad)
        step[index] = 1e-6
        w = kernel[0, 0]
        numeric[index] = (loss_of(w + step) - loss_of(w - step)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_rejects_layers_without_a_supported_kernel():
    with pytest.raises(TypeError, match="wraps Conv2D or Dense"):
        SpectralNormalization(keras.layers.LayerNormalization())


@pytest.mark.parametrize("inner", ["conv", "dense"])
def test_contract(inner, tmp_path):
    if inner == "conv":
        args = (tf.random.normal((2, 5, 5, 3)),)
        make = lambda: SpectralNormalization(keras.layers.Conv2D(4, 3, padding="same"))  # noqa: E731
        shape = (2, 5, 5, 4)
    else:
        args = (tf.random.normal((2, 3)),)
        make = lambda: SpectralNormalization(keras.layers.Dense(4))  # noqa: E731
        shape = (2, 4)
    layer = check_layer_contract(make, args, tmp_path, expected_trainable_weights=2,
                                 expected_output_shape=shape)
    assert {w.name for w in layer.non_trainable_weights} == {"u", "v"}
