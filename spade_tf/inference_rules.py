"""The rules of inference, one place for export, synthesis, evaluation and training previews.

- Images: the generator returns [-1, 1]; pixels are ``clip(round((x + 1) * 127.5), 0, 255)``
  as uint8 (:func:`to_uint8`); photos go in as ``x / 127.5 - 1`` (:func:`photo_to_unit`).
- The style latent of VAE models (:func:`style_latent`):

  * from a style photo: the encoder's mean for that photo (deterministic: the same photo
    gives the same image; the reference's test mode adds noise scaled by the encoder's
    standard deviation);
  * from a seed ``s``: ``N(0, I)`` drawn statelessly with seed ``[s, 0]``, so the same seed
    gives the same style on every machine and in every back end (the exported
    ``synthesize_seeded`` signature, ``spade-synthesize --seed``, ``spade-eval generate``);
  * from neither: a fresh ``N(0, I)`` draw (a random style).
"""

from __future__ import annotations

import tensorflow as tf


def to_uint8(images) -> tf.Tensor:
    """Generator output in [-1, 1] -> uint8 pixels, rounded and clipped."""
    pixels = tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5)
    return tf.cast(tf.clip_by_value(pixels, 0.0, 255.0), tf.uint8)


def photo_to_unit(photo) -> tf.Tensor:
    """uint8 (or float 0..255) photo -> float32 in [-1, 1], the networks' input range."""
    return tf.cast(photo, tf.float32) / 127.5 - 1.0


def seeded_latent(seeds, latent_dim: int) -> tf.Tensor:
    """One ``N(0, I)`` latent per int64 seed: [B] -> float32 [B, latent_dim]."""
    def one(seed):
        return tf.random.stateless_normal(
            [latent_dim], seed=tf.stack([seed, tf.constant(0, tf.int64)]))

    return tf.map_fn(one, tf.cast(seeds, tf.int64), fn_output_signature=tf.float32)


def style_latent(encoder, latent_dim: int, batch_size, photo=None, seeds=None) -> tf.Tensor:
    """The latent of the rule above: from ``photo`` (float [B, h, w, 3] in [-1, 1], see
    :func:`photo_to_unit`), else from ``seeds`` ([B] int64), else random."""
    if photo is not None:
        return encoder(photo, training=False)["mean"]
    if seeds is not None:
        return seeded_latent(seeds, latent_dim)
    return tf.random.normal([batch_size, latent_dim])
