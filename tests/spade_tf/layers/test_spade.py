import keras
import numpy as np
import pytest
import tensorflow as tf
from support.contract import check_layer_contract

from spade_tf.layers import SPADE, legacy_nearest_resize


def _zero_modulation(layer: SPADE) -> None:
    for conv in (layer.mlp_gamma, layer.mlp_beta):
        conv.kernel.assign(tf.zeros_like(conv.kernel))
        conv.bias.assign(tf.zeros_like(conv.bias))


def test_zero_gamma_beta_is_the_batch_norm_with_running_statistics():
    x = tf.random.normal((2, 4, 4, 3))
    segmap = tf.random.normal((2, 16, 16, 5))
    layer = SPADE(norm_type="batch")
    layer(x, segmap)
    _zero_modulation(layer)
    mean, variance = np.array([0.5, -1.0, 2.0]), np.array([0.25, 4.0, 1.0])
    layer.param_free_norm.moving_mean.assign(mean)
    layer.param_free_norm.moving_variance.assign(variance)
    expected = (x.numpy() - mean) / np.sqrt(variance + 1e-5)
    np.testing.assert_allclose(layer(x, segmap, training=False).numpy(), expected, atol=1e-5)
    # In training, batch statistics: per channel zero mean, unit variance.
    out = layer(x, segmap, training=True).numpy()
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=(0, 1, 2)), 1, atol=1e-3)


def test_zero_gamma_beta_is_the_instance_norm():
    x = tf.random.normal((2, 4, 4, 3)) * 3 + 1
    layer = SPADE(norm_type="instance")
    segmap = tf.random.normal((2, 8, 8, 2))
    layer(x, segmap)
    _zero_modulation(layer)
    values = x.numpy()
    mean = values.mean(axis=(1, 2), keepdims=True)
    std = np.sqrt(values.var(axis=(1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(layer(x, segmap).numpy(), (values - mean) / std, atol=1e-5)


def test_modulation_is_one_plus_gamma_times_norm_plus_beta_on_the_nearest_resized_map():
    x = tf.random.normal((1, 4, 4, 2))
    segmap = tf.random.normal((1, 10, 10, 3))
    layer = SPADE(norm_type="instance", hidden_filters=4)
    out = layer(x, segmap).numpy()
    resized = legacy_nearest_resize(segmap, (4, 4))
    hidden = tf.nn.relu(layer.mlp_shared(resized))
    gamma, beta = layer.mlp_gamma(hidden), layer.mlp_beta(hidden)
    normalized = layer.param_free_norm(x)
    np.testing.assert_allclose(out, (normalized * (1 + gamma) + beta).numpy(), atol=1e-6)


def test_sync_batch_is_the_default_and_synchronized():
    layer = SPADE()
    assert layer.norm_type == "sync_batch"
    assert layer.param_free_norm.synchronized


@pytest.mark.parametrize("kwargs, words", [
    ({"norm_type": "group"}, "norm_type='group' is unknown"),
    ({"kernel_size": 4}, "kernel_size=4"),
    ({"hidden_filters": 0}, "hidden_filters=0"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SPADE(**kwargs)


@pytest.mark.parametrize("norm_type", ["sync_batch", "instance"])
def test_contract(norm_type, tmp_path):
    args = (tf.random.normal((2, 4, 4, 3)), tf.random.normal((2, 8, 8, 5)))
    check_layer_contract(lambda: SPADE(norm_type=norm_type, hidden_filters=8), args, tmp_path,
                         expected_trainable_weights=6, expected_output_shape=(2, 4, 4, 3))


def test_usable_inside_a_users_functional_model():
    features = keras.Input((8, 8, 4))
    labels = keras.Input((32, 32, 6))
    x = SPADE(hidden_filters=8)(features, labels)
    out = keras.layers.Conv2D(2, 1)(x)
    model = keras.Model([features, labels], out)
    assert model([tf.ones((1, 8, 8, 4)), tf.ones((1, 32, 32, 6))]).shape == (1, 8, 8, 2)
