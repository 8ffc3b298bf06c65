"""The SPADE networks: generator, multi-scale discriminator, VAE encoder (and their factory).

The trainer that owns them, ``GauGAN``, is a task rather than a network: it lives in
:mod:`spade_tf.training`.
"""

from spade_tf.models.discriminator import MultiScaleDiscriminator
from spade_tf.models.encoder import VAEEncoder
from spade_tf.models.factory import (
    build_discriminator,
    build_encoder,
    build_generator,
    build_semantic_input,
)
from spade_tf.models.generator import SPADEGenerator

__all__ = [
    "MultiScaleDiscriminator",
    "SPADEGenerator",
    "VAEEncoder",
    "build_discriminator",
    "build_encoder",
    "build_generator",
    "build_semantic_input",
]
