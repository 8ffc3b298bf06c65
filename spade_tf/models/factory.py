"""Networks from a :class:`~spade_tf.config.ModelConfig` (the only place config meets models)."""

from __future__ import annotations

from spade_tf.config import ModelConfig
from spade_tf.layers.semantic import SemanticInput
from spade_tf.models.discriminator import MultiScaleDiscriminator
from spade_tf.models.encoder import VAEEncoder
from spade_tf.models.generator import SPADEGenerator

# The reference's discriminator and encoder use spectral norm + instance norm.
DISCRIMINATOR_NORM = "instance"


def build_semantic_input(config: ModelConfig, name: str = "semantic_input") -> SemanticInput:
    return SemanticInput(
        num_classes=config.num_classes,
        use_dontcare_label=config.use_dontcare_label,
        dontcare_label=config.dontcare_label,
        use_instance_edges=config.use_instance_edges,
        name=name,
    )


def build_generator(config: ModelConfig, name: str = "generator") -> SPADEGenerator:
    return SPADEGenerator(
        semantic_channels=config.semantic_channels,
        crop_size=config.crop_size,
        aspect_ratio=config.aspect_ratio,
        num_upsampling_layers=config.num_upsampling_layers,
        base_filters=config.base_filters,
        use_vae=config.use_vae,
        latent_dim=config.latent_dim,
        norm_type=config.norm_type,
        use_spectral_norm=config.use_spectral_norm,
        spade_hidden_filters=config.spade_hidden_filters,
        spade_kernel_size=config.spade_kernel_size,
        norm_mode=config.norm_mode,
        use_instance_edges=config.use_instance_edges,
        name=name,
    )


def build_discriminator(config: ModelConfig,
                        name: str = "discriminator") -> MultiScaleDiscriminator:
    return MultiScaleDiscriminator(
        semantic_channels=config.semantic_channels,
        num_discriminators=config.num_discriminators,
        num_layers=config.disc_layers,
        base_filters=config.disc_filters,
        use_spectral_norm=config.use_spectral_norm,
        norm_type=DISCRIMINATOR_NORM,
        name=name,
    )


def build_encoder(config: ModelConfig, name: str = "encoder") -> VAEEncoder:
    return VAEEncoder(
        base_filters=config.encoder_filters,
        latent_dim=config.latent_dim,
        input_size=config.encoder_input_size,
        use_spectral_norm=config.use_spectral_norm,
        norm_type=DISCRIMINATOR_NORM,
        name=name,
    )
