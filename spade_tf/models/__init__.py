"""The SPADE networks: generator, multi-scale discriminator, VAE encoder."""

from spade_tf.models.discriminator import AveragePoolExcludingPadding, MultiScaleDiscriminator
from spade_tf.models.encoder import VAEEncoder
from spade_tf.models.factory import (
    build_discriminator,
    build_encoder,
    build_generator,
    build_semantic_input,
)
from spade_tf.models.generator import SPADEGenerator

__all__ = [
    "AveragePoolExcludingPadding",
    "MultiScaleDiscriminator",
    "SPADEGenerator",
    "VAEEncoder",
    "build_discriminator",
    "build_encoder",
    "build_generator",
    "build_semantic_input",
]
