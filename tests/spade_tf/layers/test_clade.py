"""CLADE: per-class modulation, the instance-edge channel, the residual block's norm choice."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.contract import check_layer_contract

from spade_tf.layers import CLADE, SPADEResBlock, legacy_nearest_resize
from spade_tf.precision import building_under


def _one_hot(ids, depth, edges=None):
    semantic = np.eye(depth, dtype=np.float32)[ids]
    if edges is not None:
        semantic = np.concatenate([semantic, edges[..., None].astype(np.float32)], -1)
    return tf.constant(semantic)


def _instance_norm(x):
    values = np.asarray(x)
    mean = values.mean(axis=(1, 2), keepdims=True)
    return (values - mean) / np.sqrt(values.var(axis=(1, 2), keepdims=True) + 1e-5)


def test_each_pixel_takes_its_class_gamma_and_beta_from_the_nearest_resized_map():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 4, 6, 3)) * 2 + 1, tf.float32)
    ids = rng.integers(0, 5, (2, 10, 15))
    layer = CLADE(norm_type="instance")
    layer(x, _one_hot(ids, 5))
    gamma, beta = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    # PyTorch's legacy nearest: rows floor(i * 10 / 4), columns floor(j * 15 / 6).
    small = ids[:, [0, 2, 5, 7]][:, :, [0, 2, 5, 7, 10, 12]]
    expected = _instance_norm(x) * gamma[small] + beta[small]
    np.testing.assert_allclose(layer(x, _one_hot(ids, 5)).numpy(), expected, atol=1e-5)


def test_starts_as_the_official_code_and_is_batch_norm_with_running_statistics():
    x = tf.random.normal((2, 4, 4, 3))
    layer = CLADE(norm_type="batch")
    layer(x, _one_hot(np.zeros((2, 8, 8), int), 4))
    gamma = layer.gamma.numpy()
    assert gamma.shape == (4, 3) and gamma.min() >= 0 and gamma.max() < 1 and gamma.std() > 0
    assert not layer.beta.numpy().any()
    layer.gamma.assign(tf.ones((4, 3)))
    mean, variance = np.array([0.5, -1.0, 2.0]), np.array([0.25, 4.0, 1.0])
    layer.param_free_norm.moving_mean.assign(mean)
    layer.param_free_norm.moving_variance.assign(variance)
    out = layer(x, _one_hot(np.ones((2, 8, 8), int), 4), training=False)
    np.testing.assert_allclose(out.numpy(), (x.numpy() - mean) / np.sqrt(variance + 1e-5),
                               atol=1e-5)


def test_instance_edges_are_no_class_and_add_one_convolved_channel():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(1, 8, 8, 2)), tf.float32)
    ids, edges = rng.integers(0, 3, (1, 8, 8)), rng.integers(0, 2, (1, 8, 8))
    layer = CLADE(norm_type="instance", use_instance_edges=True)
    out = layer(x, _one_hot(ids, 3, edges)).numpy()
    assert out.shape == (1, 8, 8, 3) and layer.gamma.shape == (3, 2)
    kernel, bias = layer.inst_conv.kernel.numpy(), layer.inst_conv.bias.numpy()
    np.testing.assert_allclose(out[..., 2], edges * kernel.item() + bias.item(), atol=1e-6)
    # Class 2 everywhere but an edge in the last channel: the edge does not win the argmax.
    ids_2 = np.full((1, 8, 8), 2)
    np.testing.assert_allclose(layer(x, _one_hot(ids_2, 3, np.ones((1, 8, 8)))).numpy()[..., :2],
                               _instance_norm(x) * layer.gamma.numpy()[2]
                               + layer.beta.numpy()[2], atol=1e-5)


def test_bad_arguments_and_maps():
    with pytest.raises(ValueError, match="norm_type='group' is unknown"):
        CLADE(norm_type="group")
    with pytest.raises(ValueError, match="at least one class channel besides the instance"):
        CLADE(use_instance_edges=True)(tf.zeros((1, 4, 4, 2)), tf.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="norm_mode='adain' is unknown"):
        SPADEResBlock(4, norm_mode="adain")


@pytest.mark.parametrize("use_instance_edges, trainable, channels", [
    (False, 2, 3), (True, 4, 4)])
def test_contract(use_instance_edges, trainable, channels, tmp_path):
    ids = np.random.default_rng(2).integers(0, 4, (2, 8, 8))
    edges = (ids % 2) if use_instance_edges else None
    args = (tf.random.normal((2, 4, 4, 3)), _one_hot(ids, 4, edges))
    check_layer_contract(lambda: CLADE(norm_type="sync_batch",
                                       use_instance_edges=use_instance_edges),
                         args, tmp_path, expected_trainable_weights=trainable,
                         expected_output_shape=(2, 4, 4, channels))


def test_residual_block_convolutions_take_the_edge_channel(tmp_path):
    ids = np.random.default_rng(3).integers(0, 3, (2, 8, 8))
    args = (tf.random.normal((2, 4, 4, 6)), _one_hot(ids, 3, ids == 1))
    block = check_layer_contract(
        lambda: SPADEResBlock(4, norm_mode="clade", use_instance_edges=True), args, tmp_path,
        # conv_0, conv_1 (kernel, bias), conv_s; 3 CLADEs of gamma, beta, inst_conv x 2
        expected_trainable_weights=17, expected_output_shape=(2, 4, 4, 4))
    # One input channel more than SPADE's: 6 + 1 -> 4, 4 + 1 -> 4, 1x1 6 + 1 -> 4.
    assert block.conv_0.layer.kernel.shape == (3, 3, 7, 4)
    assert block.conv_1.layer.kernel.shape == (3, 3, 5, 4)
    assert block.conv_s.layer.kernel.shape == (1, 1, 7, 4)
    assert block.norm_0.gamma.shape == (3, 6) and block.norm_1.gamma.shape == (3, 4)


def test_bfloat16_under_the_mixed_policy():
    ids = np.random.default_rng(4).integers(0, 3, (1, 16, 16))
    x, segmap = tf.random.normal((1, 8, 8, 4)), _one_hot(ids, 3)
    full = CLADE(norm_type="instance")
    expected = full(x, segmap).numpy()
    with building_under("mixed_bfloat16"):
        half = CLADE(norm_type="instance")
        half(x, segmap)
    half.set_weights(full.get_weights())
    out = half(keras.ops.cast(x, "bfloat16"), segmap)
    assert out.dtype == "bfloat16" and half.gamma.dtype == "float32"
    np.testing.assert_allclose(keras.ops.cast(out, "float32").numpy(), expected, atol=0.05)


def test_resize_rule_is_the_legacy_nearest_one():
    # The class map is read where legacy_nearest_resize reads it, on either side of a size.
    ids = np.arange(12 * 12).reshape(1, 12, 12) % 7
    layer = CLADE(norm_type="instance")
    x = tf.random.normal((1, 5, 5, 1))
    layer(x, _one_hot(ids, 7))
    layer.gamma.assign(tf.zeros((7, 1)))
    layer.beta.assign(tf.range(7, dtype=tf.float32)[:, None])
    picked = legacy_nearest_resize(tf.constant(ids[..., None]), (5, 5)).numpy()
    np.testing.assert_array_equal(layer(x, _one_hot(ids, 7)).numpy(), picked)


def test_table_gradients_are_dense_per_class_sums():
    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(2, 4, 4, 3)), tf.float32)
    ids = rng.integers(0, 4, (2, 4, 4))
    ids[0, 0, 0] = 3  # at least one pixel of the last class
    layer = CLADE(norm_type="instance")
    layer(x, _one_hot(ids, 5))
    upstream = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, _one_hot(ids, 5)) * upstream)
    gamma_grad, beta_grad = tape.gradient(loss, [layer.gamma, layer.beta])
    assert isinstance(gamma_grad, tf.Tensor) and isinstance(beta_grad, tf.Tensor)
    normalized = _instance_norm(x)
    for k in range(5):  # class 4 is absent: zero rows
        mask = ids == k
        np.testing.assert_allclose(beta_grad[k], upstream[mask].sum(0), atol=1e-4)
        np.testing.assert_allclose(gamma_grad[k], (upstream * normalized)[mask].sum(0),
                                   atol=1e-4)


def test_the_config_names_the_option_and_its_values():
    from spade_tf.config import ConfigError, ModelConfig

    assert ModelConfig().norm_mode == "spade"  # the reference's, by default
    with pytest.raises(ConfigError, match=r"model.norm_mode='CLADE' is invalid: expected "
                                          r"one of \['spade', 'clade'\]"):
        ModelConfig(norm_mode="CLADE")
