"""The generator step runs D on fake and on real apart: same values as the stacked call."""

import numpy as np
import pytest
import tensorflow as tf

from spade_tf.config import Config, ModelConfig, TrainConfig
from spade_tf.training import build_trainer


def _spectral_state(discriminator) -> list[np.ndarray]:
    return [w.numpy() for w in discriminator.weights if w.name in ("u", "v")]


def _trainer_and_batch():
    config = Config(model=ModelConfig(num_classes=5, crop_size=32, base_filters=4,
                                      disc_filters=8, use_instance_edges=False),
                    train=TrainConfig(batch_size=2, vgg_weight=0.0))
    trainer = build_trainer(config)
    rng = np.random.default_rng(0)
    data = {"label": tf.constant(rng.integers(0, 5, (2, 32, 32)), tf.int32),
            "image": tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32)}
    return trainer, data


def test_apart_equals_stacked_and_iterates_spectral_norm_once():
    trainer, data = _trainer_and_batch()
    assert trainer.discriminator.norm_type == "instance"
    semantic = trainer.semantic(data)
    real = data["image"]
    fake = tf.tanh(real * 0.7 + 0.1)
    before = _spectral_state(trainer.discriminator)
    assert before, "the discriminator has spectral norm's vectors"

    stacked = trainer._discriminate(semantic, fake, real, training=True)
    after_stacked = _spectral_state(trainer.discriminator)
    for variable, value in zip([w for w in trainer.discriminator.weights
                                if w.name in ("u", "v")], before, strict=True):
        variable.assign(value)
    apart = trainer._discriminate_apart(semantic, fake, real)
    after_apart = _spectral_state(trainer.discriminator)

    # One power iteration either way (the real half reads the vectors the fake half left).
    for a, b, old in zip(after_apart, after_stacked, before, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, old)
    for stacked_half, apart_half in zip(stacked, apart, strict=True):
        for stacked_scale, apart_scale in zip(stacked_half, apart_half, strict=True):
            for s, a in zip(stacked_scale, apart_scale, strict=True):
                np.testing.assert_allclose(a.numpy(), s.numpy(), rtol=1e-5, atol=1e-6)


def test_generator_gradients_equal_those_of_the_stacked_call(monkeypatch):
    trainer, data = _trainer_and_batch()
    variables = trainer.generator.trainable_variables
    # Both calls start from the same state (spectral norm's vectors, moving statistics).
    state = [w.numpy() for w in trainer.weights]

    def gradients():
        for variable, value in zip(trainer.weights, state, strict=True):
            variable.assign(value)
        tf.random.set_seed(1)
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(trainer.generator_losses(data)["g_total"])
        return total, tape.gradient(total, variables)

    apart_total, apart = gradients()
    monkeypatch.setattr(trainer.discriminator, "norm_type", "batch")  # stacked, as the reference
    stacked_total, stacked = gradients()
    np.testing.assert_allclose(apart_total.numpy(), stacked_total.numpy(), rtol=1e-5)
    worst = max(float(tf.reduce_max(tf.abs(a - s)) / (tf.reduce_max(tf.abs(s)) + 1e-12))
                for a, s in zip(apart, stacked, strict=True))
    assert worst < 1e-4, worst
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in apart)


@pytest.mark.parametrize(("norm_type", "expected"), [
    ("instance", [(2, True), (2, False)]),
    # Batch statistics over fake and real together: only the stacked call gives them.
    ("batch", [(4, True)]), ("sync_batch", [(4, True)])])
def test_how_the_generator_step_calls_the_discriminator(norm_type, expected, monkeypatch):
    trainer, data = _trainer_and_batch()
    calls = []
    monkeypatch.setattr(trainer, "discriminator",
                        _Recording(trainer.discriminator, norm_type, calls))
    trainer.generator_losses(data)
    assert calls == expected


class _Recording:
    """A discriminator that records (batch size, training) of each call."""

    def __init__(self, discriminator, norm_type: str, calls: list):
        self._discriminator, self._calls = discriminator, calls
        self.norm_type = norm_type

    def __call__(self, inputs, training=False):
        self._calls.append((int(inputs["image"].shape[0]), training))
        return self._discriminator(inputs, training=training)
