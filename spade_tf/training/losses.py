"""GauGAN's losses as pure functions returning one value per example.

Every function returns a float32 tensor of shape [B]; the training step reduces them
once, over the global batch (``tf.nn.compute_average_loss``), so results do not depend
on how the batch is split across replicas. Discriminator outputs are what
:class:`~spade_tf.models.MultiScaleDiscriminator` returns: per scale, a list of every
stage's features with the patch logits last.

GAN modes (``gan_mode``), as in the reference:

- ``"hinge"``: G ``-mean(D(fake))``; D ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``;
- ``"least_squares"``: G ``mean((D(fake) - 1)^2)``; D ``mean((D(real) - 1)^2) + mean(D(fake)^2)``;
- ``"original"``: binary cross-entropy on logits, real = 1, fake = 0;
- ``"wasserstein"``: G ``-mean(D(fake))``; D ``-mean(D(real)) + mean(D(fake))``.

Each is averaged over the discriminator's scales.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from spade_tf.config import GAN_MODES

VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def _per_example_mean(tensor) -> tf.Tensor:
    tensor = tf.cast(tensor, tf.float32)
    return tf.reduce_mean(tf.reshape(tensor, [tf.shape(tensor)[0], -1]), axis=1)


def _logits(outputs) -> list:
    """The patch logits of each scale (the last feature of each scale's list)."""
    return [scale[-1] if isinstance(scale, (list, tuple)) else scale for scale in outputs]


def check_gan_mode(gan_mode: str) -> None:
    """Raise ValueError unless ``gan_mode`` is one of ``GAN_MODES``."""
    if gan_mode not in GAN_MODES:
        raise ValueError(f"gan_mode={gan_mode!r} is unknown: expected one of {list(GAN_MODES)}.")


def _term(logits, target_is_real: bool, gan_mode: str, for_discriminator: bool) -> tf.Tensor:
    x = tf.cast(logits, tf.float32)
    if gan_mode == "hinge":
        if not for_discriminator:
            return _per_example_mean(-x)
        return _per_example_mean(tf.nn.relu(1.0 - x) if target_is_real else tf.nn.relu(1.0 + x))
    if gan_mode == "least_squares":
        return _per_example_mean(tf.square(x - 1.0) if target_is_real else tf.square(x))
    if gan_mode == "original":
        labels = tf.ones_like(x) if target_is_real else tf.zeros_like(x)
        return _per_example_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, x))
    return _per_example_mean(-x if target_is_real else x)  # wasserstein


def _over_scales(outputs, target_is_real: bool, gan_mode: str,
                 for_discriminator: bool) -> tf.Tensor:
    check_gan_mode(gan_mode)
    logits = _logits(outputs)
    terms = [_term(x, target_is_real, gan_mode, for_discriminator) for x in logits]
    return tf.add_n(terms) / float(len(terms))


def generator_gan_loss(fake_outputs, gan_mode: str = "hinge") -> tf.Tensor:
    """The generator's adversarial loss on D(fake), per example."""
    return _over_scales(fake_outputs, True, gan_mode, for_discriminator=False)


def discriminator_losses(real_outputs, fake_outputs,
                         gan_mode: str = "hinge") -> tuple[tf.Tensor, tf.Tensor]:
    """(loss on real, loss on fake) of the discriminator, per example; D's loss is the sum."""
    return (_over_scales(real_outputs, True, gan_mode, for_discriminator=True),
            _over_scales(fake_outputs, False, gan_mode, for_discriminator=True))


def feature_matching_loss(real_outputs, fake_outputs) -> tf.Tensor:
    """L1 between D's intermediate features on fake and (fixed) real, per example.

    Summed over the intermediate features of each scale (all but the logits) and
    divided by the number of scales, as the reference does (before its weight 10).
    """
    total = 0.0
    for real_scale, fake_scale in zip(real_outputs, fake_outputs, strict=True):
        for real, fake in zip(real_scale[:-1], fake_scale[:-1], strict=True):
            total += _per_example_mean(tf.abs(tf.cast(fake, tf.float32)
                                              - tf.stop_gradient(tf.cast(real, tf.float32))))
    return total / float(len(real_outputs))


def vgg_loss(features: Callable[[tf.Tensor], Sequence[tf.Tensor]], fake, real,
             layer_weights: Sequence[float] = VGG_LAYER_WEIGHTS) -> tf.Tensor:
    """Perceptual L1 between feature maps of fake and (fixed) real, per example.

    ``features`` maps a batch of images to a list of feature maps (VGG19's relu1_1 ...
    relu5_1 in GauGAN); ``layer_weights`` weighs each map's L1 (1/32 ... 1).
    """
    fake_features = features(fake)
    real_features = features(real)
    total = 0.0
    for weight, fake_map, real_map in zip(layer_weights, fake_features, real_features,
                                          strict=True):
        total += weight * _per_example_mean(
            tf.abs(tf.cast(fake_map, tf.float32)
                   - tf.stop_gradient(tf.cast(real_map, tf.float32))))
    return total


def kl_divergence(mean, log_variance) -> tf.Tensor:
    """KL(N(mean, exp(log_variance)) || N(0, 1)) summed over latent dimensions, per example.

    The reference sums it over its per-GPU batch as well; reducing per-example values
    over the global batch instead keeps the term independent of the batch split (equal
    to the reference's at one example per GPU).
    """
    mean = tf.cast(mean, tf.float32)
    log_variance = tf.cast(log_variance, tf.float32)
    return -0.5 * tf.reduce_sum(1.0 + log_variance - tf.square(mean) - tf.exp(log_variance),
                                axis=-1)
