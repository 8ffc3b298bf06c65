"""Tiny reference networks in PyTorch, randomised and described by a matching config.

Used by the converter's parity tests (and the benchmarks); needs torch.
"""

from spade_tf.config import Config, ModelConfig
from spade_tf.testing import torch_reference as reference

# 5 classes + don't-care + instance edges = 7 semantic channels; hidden width 128 as in
# the reference (fixed there), few filters so everything runs in a second on a CPU.
TINY_MODEL = {"num_classes": 5, "use_dontcare_label": True, "use_instance_edges": True,
              "crop_size": 64, "base_filters": 4, "latent_dim": 16, "disc_filters": 8,
              "encoder_filters": 4}


def tiny_config(**changes) -> Config:
    return Config(model=ModelConfig(**{**TINY_MODEL, **changes}))


def torch_generator(config: Config, seed: int = 0, sn_api: str = "old"):
    model = config.model
    network = reference.SPADEGenerator(
        model.semantic_channels, crop_size=model.crop_size, aspect_ratio=model.aspect_ratio,
        num_upsampling_layers=model.num_upsampling_layers, use_vae=model.use_vae,
        base_filters=model.base_filters, latent_dim=model.latent_dim, sn_api=sn_api,
    )
    return reference.randomize_(network, seed)


def torch_discriminator(config: Config, seed: int = 1, sn_api: str = "old"):
    model = config.model
    network = reference.MultiscaleDiscriminator(
        model.semantic_channels + 3, num_scales=model.num_discriminators,
        n_layers=model.disc_layers, base_filters=model.disc_filters, sn_api=sn_api,
    )
    return reference.randomize_(network, seed)


def torch_encoder(config: Config, seed: int = 2, sn_api: str = "old"):
    model = config.model
    network = reference.ConvEncoder(base_filters=model.encoder_filters,
                                    latent_dim=model.latent_dim, sn_api=sn_api)
    return reference.randomize_(network, seed)
