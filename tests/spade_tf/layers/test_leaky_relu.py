"""The leaky ReLU that training differentiates from its output."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from spade_tf.config import Config, ModelConfig, TrainConfig
from spade_tf.layers.common import LeakyReLU, leaky_relu_saving_output
from spade_tf.training import build_trainer


def _inputs() -> tf.Tensor:
    # Both signs, exact zeros and tiny values, where a sign mistake would show.
    values = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype(np.float32)
    values[0, 0, :, 0] = [0.0, -0.0, 1e-30, -1e-30, 0.0]
    return tf.constant(values)


def _value_and_gradient(function, x):
    upstream = tf.random.stateless_normal(x.shape, seed=(1, 2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
    return y, tape.gradient(y, x, output_gradients=upstream)


@pytest.mark.parametrize("slope", [0.2, 0.0, 0.01])
def test_same_values_and_gradient_as_the_plain_activation(slope):
    x = _inputs()
    ours, our_gradient = _value_and_gradient(lambda t: leaky_relu_saving_output(t, slope), x)
    plain, plain_gradient = _value_and_gradient(lambda t: tf.nn.leaky_relu(t, slope), x)
    np.testing.assert_array_equal(ours.numpy(), plain.numpy())
    np.testing.assert_array_equal(our_gradient.numpy(), plain_gradient.numpy())


def test_layer_in_training_and_inference_and_saved_in_a_model(tmp_path):
    x = _inputs()
    layer = LeakyReLU(0.2)
    for training in (True, False):
        ours, our_gradient = _value_and_gradient(
            lambda t, training=training: layer(t, training=training), x)
        plain, plain_gradient = _value_and_gradient(keras.layers.LeakyReLU(0.2), x)
        np.testing.assert_array_equal(ours.numpy(), plain.numpy())
        np.testing.assert_array_equal(our_gradient.numpy(), plain_gradient.numpy())

    inputs = keras.Input((5, 5, 3))
    model = keras.Model(inputs, LeakyReLU(0.3, name="act")(inputs))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.get_layer("act")) is LeakyReLU
    assert loaded.get_layer("act").negative_slope == pytest.approx(0.3)
    np.testing.assert_array_equal(loaded(x).numpy(), tf.nn.leaky_relu(x, 0.3).numpy())


def _ancestor_types(tensor: tf.Tensor, stop: set[str]) -> set[str]:
    """Op types reached upwards from ``tensor`` through ops that merely pass it on."""
    op, seen = tensor.op, set()
    while op.type in stop and op.inputs:
        seen.add(op.type)
        op = op.inputs[0].op
    return seen | {op.type}


def test_a_training_step_differentiates_every_leaky_relu_from_its_output():
    """In GauGAN's step (G and D, VGG off) every LeakyReluGrad reads a LeakyRelu's output:
    the pre-activation tensors are not kept for the backward pass, and TensorFlow's graph
    optimizer does not fail on fused conv/add + activation (it did, for the whole step)."""
    config = Config(model=ModelConfig(num_classes=4, use_instance_edges=True, crop_size=32,
                                      base_filters=4, disc_filters=8, use_vae=True,
                                      encoder_filters=4),
                    train=TrainConfig(batch_size=2, vgg_weight=0.0))
    trainer = build_trainer(config)
    batch = {"label": tf.zeros((2, 32, 32), tf.int32),
             "instance": tf.zeros((2, 32, 32), tf.int32),
             "image": tf.zeros((2, 32, 32, 3))}
    graph = tf.function(trainer.train_step).get_concrete_function(batch).graph
    gradients = [op for op in graph.get_operations() if op.type == "LeakyReluGrad"]
    # G: two per residual block and one before conv_img; D: one per stage but the last;
    # the encoder: one per stage and one at the end. All of them, then.
    assert len(gradients) >= 10
    for op in gradients:
        features = op.inputs[1]
        assert "LeakyRelu" in _ancestor_types(features, {"Identity", "IdentityN"}), op.name
