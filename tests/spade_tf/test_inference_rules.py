"""The inference rules every back end follows, checked against numbers written by hand."""

import numpy as np
import tensorflow as tf

from spade_tf.inference_rules import photo_to_unit, seeded_latent, style_latent, to_uint8


def test_pixels_are_rounded_half_to_even_and_clipped():
    values = tf.constant([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    # (x + 1) * 127.5: -63.75, 0, 63.75, 127.5, 191.25, 255, 382.5
    assert to_uint8(values).numpy().tolist() == [0, 0, 64, 128, 191, 255, 255]
    assert to_uint8(values).dtype == tf.uint8
    np.testing.assert_allclose(photo_to_unit(tf.constant([0, 51, 255], tf.uint8)).numpy(),
                               [-1.0, -0.6, 1.0], atol=1e-7)


def test_a_seed_is_the_same_style_everywhere():
    # Stateless Philox draws: fixed by the seed alone (recorded with TensorFlow 2.21).
    expected = [[-0.6715848, 1.6760504, -0.9442455, 0.6079389],
                [-0.6741728, -0.3586926, -1.8795817, -1.4728931]]
    np.testing.assert_allclose(seeded_latent(tf.constant([3, 7], tf.int64), 4).numpy(),
                               expected, atol=1e-6)
    again = seeded_latent(np.array([7], np.int64), 4).numpy()
    np.testing.assert_array_equal(again[0], seeded_latent(tf.constant([3, 7], tf.int64),
                                                          4).numpy()[1])


def test_a_photo_gives_the_encoders_mean_and_nothing_gives_a_random_style():
    calls = []

    def encoder(photo, training):
        calls.append(training)
        return {"mean": tf.reduce_mean(photo, axis=[1, 2]), "log_variance": tf.zeros([1, 3])}

    photo = photo_to_unit(tf.fill([1, 2, 2, 3], tf.constant(255, tf.uint8)))
    np.testing.assert_array_equal(style_latent(encoder, 3, 1, photo=photo).numpy(), [[1, 1, 1]])
    assert calls == [False]  # inference: no noise, no statistics updates
    first, second = style_latent(encoder, 3, 2).numpy(), style_latent(encoder, 3, 2).numpy()
    assert first.shape == (2, 3) and not np.array_equal(first, second)
