"""Golden values of every loss on fixed tensors (worked out by hand in the comments)."""

import numpy as np
import pytest
import tensorflow as tf

from spade_tf.training import losses

# Two examples, two scales. Scale 0 logits 2x2, scale 1 logits 1x1.
FAKE = [[tf.zeros((2, 2, 2, 1)), tf.constant([[[[1.0], [-2.0]], [[3.0], [0.0]]],
                                             [[[-1.0], [-1.0]], [[-1.0], [-1.0]]]])],
        [tf.zeros((2, 1, 1, 1)), tf.constant([[[[2.0]]], [[[0.5]]]])]]
REAL = [[tf.ones((2, 2, 2, 1)), tf.constant([[[[0.0], [2.0]], [[0.5], [1.5]]],
                                            [[[1.0], [1.0]], [[1.0], [1.0]]]])],
        [tf.ones((2, 1, 1, 1)), tf.constant([[[[-1.0]]], [[[3.0]]]])]]


def test_hinge_generator():
    # example 0: scale0 mean(-x) = -(1-2+3+0)/4 = -0.5; scale1 -2 -> (-0.5-2)/2 = -1.25
    # example 1: scale0 1.0; scale1 -0.5 -> 0.25
    np.testing.assert_allclose(losses.generator_gan_loss(FAKE, "hinge"), [-1.25, 0.25])


def test_hinge_discriminator():
    real, fake = losses.discriminator_losses(REAL, FAKE, "hinge")
    # real ex0: scale0 mean(relu(1-x)) = (1+0+0.5+0)/4 = 0.375; scale1 relu(2) = 2 -> 1.1875
    # real ex1: scale0 0; scale1 relu(-2) = 0 -> 0
    np.testing.assert_allclose(real, [1.1875, 0.0])
    # fake ex0: scale0 mean(relu(1+x)) = (2+0+4+1)/4 = 1.75; scale1 3 -> 2.375
    # fake ex1: scale0 0; scale1 1.5 -> 0.75
    np.testing.assert_allclose(fake, [2.375, 0.75])


def test_least_squares_original_and_wasserstein():
    # least squares G: ex0 scale0 mean((x-1)^2) = (0+9+4+1)/4 = 3.5, scale1 1 -> 2.25
    np.testing.assert_allclose(losses.generator_gan_loss(FAKE, "least_squares")[0], 2.25)
    real, fake = losses.discriminator_losses(REAL, FAKE, "least_squares")
    # real ex1: scale0 0, scale1 (3-1)^2 = 4 -> 2; fake ex1: scale0 1, scale1 0.25 -> 0.625
    np.testing.assert_allclose([real[1], fake[1]], [2.0, 0.625])
    # original G on ex1: softplus(-x): scale0 softplus(1) = 1.3132617, scale1 softplus(-0.5)
    expected = (np.log1p(np.exp(1.0)) + np.log1p(np.exp(-0.5))) / 2
    np.testing.assert_allclose(losses.generator_gan_loss(FAKE, "original")[1], expected,
                               rtol=1e-6)
    real, fake = losses.discriminator_losses(REAL, FAKE, "wasserstein")
    # ex0: real -mean(x): scale0 -1, scale1 1 -> 0; fake mean(x): 0.5, 2 -> 1.25
    np.testing.assert_allclose([real[0], fake[0]], [0.0, 1.25])


def test_unknown_mode():
    with pytest.raises(ValueError, match="gan_mode='ls' is unknown"):
        losses.generator_gan_loss(FAKE, "ls")


def test_feature_matching():
    # Intermediate features only (the logits are excluded): scale0 |0 - 1| = 1,
    # scale1 |0 - 1| = 1 -> (1 + 1) / 2 scales = 1 for both examples.
    np.testing.assert_allclose(losses.feature_matching_loss(REAL, FAKE), [1.0, 1.0])
    real = [[tf.fill((1, 2, 2, 3), 2.0), tf.zeros((1, 1, 1, 1))]]
    fake = [[tf.constant(np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)),
             tf.zeros((1, 1, 1, 1))]]
    # mean |k - 2| for k = 0..11 = (2 + 1 + 0 + 1 + 2 + ... + 9) / 12 = 48 / 12
    np.testing.assert_allclose(losses.feature_matching_loss(real, fake), [4.0], rtol=1e-6)


def test_feature_matching_gives_no_gradient_to_real_features():
    real = tf.Variable(tf.ones((1, 2, 2, 1)))
    fake = tf.Variable(tf.zeros((1, 2, 2, 1)))
    with tf.GradientTape() as tape:
        loss = losses.feature_matching_loss([[real, real]], [[fake, fake]])
    grad_real, grad_fake = tape.gradient(loss, [real, fake])
    assert grad_real is None
    np.testing.assert_allclose(grad_fake, -0.25 * np.ones((1, 2, 2, 1)))


def test_vgg_term_with_a_fixed_tiny_network():
    fake = tf.zeros((1, 16, 16, 3))
    real = tf.fill((1, 16, 16, 3), 0.5)
    # Every map differs by 0.5 * (depth + 1): sum_d w_d * 0.5 * (d + 1) with
    # w = 1/32, 1/16, 1/8, 1/4, 1 -> 0.5 * (1/32 + 2/16 + 3/8 + 4/4 + 5) = 3.265625
    np.testing.assert_allclose(losses.vgg_loss(_tiny_features, fake, real), [3.265625])


def test_kl_divergence():
    mean = tf.constant([[0.0, 0.0], [1.0, -2.0]])
    log_variance = tf.constant([[0.0, 0.0], [np.log(2.0), 0.0]])
    # ex0: standard normal -> 0. ex1: -0.5 * [(1 + ln2 - 1 - 2) + (1 + 0 - 4 - 1)]
    expected = -0.5 * ((1 + np.log(2.0) - 1 - 2) + (1 - 4 - 1))
    np.testing.assert_allclose(losses.kl_divergence(mean, log_variance), [0.0, expected],
                               rtol=1e-6)


def _tiny_features(images):
    """Five "layers": the image, then 2x2 average pools of it, scaled by the depth."""
    maps, x = [], images
    for depth in range(5):
        maps.append(x * (depth + 1))
        x = tf.nn.avg_pool2d(x, 2, 2, "VALID") if x.shape[1] > 1 else x
    return maps


@pytest.mark.parametrize("kl_reduction, kl_term", [
    # KL of example 1 (test_kl_divergence): 3 - ln(2) / 2 = 2.6534264; weight 0.05;
    # "per_replica_sum" multiplies by the replica's batch (2 here, one replica).
    ("global_mean", 0.05 * (3 - np.log(2.0) / 2)),
    ("per_replica_sum", 0.05 * 2 * (3 - np.log(2.0) / 2)),
])
def test_gaugan_weighs_and_adds_the_terms(kl_reduction, kl_term):
    """GauGAN's per-example terms on stub networks with fixed outputs, worked out by hand:
    the discriminator returns FAKE for the fake half and REAL for the real half, the fake
    image is 0, the real one 0.5, and the encoder returns the KL test's mean/variance."""
    from spade_tf.training import GauGAN

    outputs = [[tf.concat([f, r], axis=0) for f, r in zip(fake, real, strict=True)]
               for fake, real in zip(FAKE, REAL, strict=True)]

    class Generator:
        use_vae = True

        def __call__(self, inputs, training=False):
            assert set(inputs) == {"semantic", "latent"}
            return tf.zeros((2, 16, 16, 3))

    gaugan = GauGAN(
        generator=Generator(),
        discriminator=lambda inputs, training=False: outputs,
        semantic_input=lambda label, instance=None: tf.zeros((2, 16, 16, 1)),
        encoder=lambda image, training=False: {
            "mean": tf.constant([[0.0, 0.0], [1.0, -2.0]]),
            "log_variance": tf.constant([[0.0, 0.0], [np.log(2.0), 0.0]])},
        vgg_features=_tiny_features, kl_reduction=kl_reduction)
    data = {"label": tf.zeros((2, 16, 16), tf.int32), "image": tf.fill((2, 16, 16, 3), 0.5)}
    terms = gaugan.generator_losses(data)
    # g_gan from test_hinge_generator; feature matching 1 per example (test_feature_matching)
    # times 10; VGG 3.265625 per example (test_vgg_term_with_a_fixed_tiny_network) times 10.
    expected = {"g_gan": [-1.25, 0.25], "g_feature_matching": [10.0, 10.0],
                "g_vgg": [32.65625, 32.65625], "g_kl": [0.0, kl_term]}
    expected["g_total"] = [-1.25 + 10.0 + 32.65625, 0.25 + 10.0 + 32.65625 + kl_term]
    assert set(terms) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(terms[name], values, rtol=1e-6, err_msg=name)
    # D on the same outputs: test_hinge_discriminator's values, and their sum.
    d_terms = gaugan.discriminator_losses(data)
    for name, values in {"d_real": [1.1875, 0.0], "d_fake": [2.375, 0.75],
                         "d_total": [3.5625, 0.75]}.items():
        np.testing.assert_allclose(d_terms[name], values, rtol=1e-6, err_msg=name)
