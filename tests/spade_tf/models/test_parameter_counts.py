"""Full-size networks: counts and shapes must equal the reference's to the unit.

The counts are the table of docs/design.md ("The networks' parameter counts"),
measured on the reference implementation (NVlabs/SPADE) with base_filters 64, 2 D scales,
4 D layers and latent 256. The suite's PyTorch networks (spade_tf.testing.torch_reference,
built on torch's meta device: no memory, no time) must give the same numbers too, so the
table, the Keras networks and the PyTorch networks of the parity tests agree.
"""

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf
from support import import_torch

from spade_tf.config import ModelConfig
from spade_tf.models import build_discriminator, build_encoder, build_generator

CITYSCAPES = {"num_classes": 35, "use_instance_edges": True, "crop_size": 512,
              "aspect_ratio": 2.0}
ADE20K = {"num_classes": 150, "use_dontcare_label": True}
COCO_STUFF = {"num_classes": 182, "use_dontcare_label": True, "use_instance_edges": True}

# docs/design.md's table: (settings, upsampling, semantic channels, G, G with VAE).
GENERATOR_TABLE = [
    (CITYSCAPES, "more", 36, 93_048_003, 101_136_579),
    (CITYSCAPES, "normal", 36, 93_048_003, 126_400_707),
    (ADE20K, "normal", 151, 96_492_483, 111_942_595),
    (COCO_STUFF, "normal", 184, 97_480_899, 112_626_883),
]
DISCRIMINATOR_TABLE = [(CITYSCAPES, 5_601_410), (ADE20K, 5_836_930), (COCO_STUFF, 5_904_514)]
ENCODER_COUNT = 10_463_424


def _count(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# Generators of these widths (base_filters) are quick to build; see test_generator_counts.
SMALL_WIDTHS = (1, 2, 3)


def _at(points: list[tuple[int, int]], x: int) -> Fraction:
    """The polynomial of degree len(points) - 1 through ``points``, at ``x`` (Lagrange)."""
    total = Fraction(0)
    for i, (xi, yi) in enumerate(points):
        term = Fraction(yi)
        for j, (xj, _) in enumerate(points):
            if j != i:
                term *= Fraction(x - xj, xi - xj)
        total += term
    return total


def test_a_full_size_generator_counts_the_table():
    """Built for real at base_filters 64: Cityscapes, "more", instance edges and the VAE's
    input layer (the widest row)."""
    settings, mode, _, _, generator_vae = GENERATOR_TABLE[0]
    config = ModelConfig(num_upsampling_layers=mode, use_vae=True, **settings)
    assert config.base_filters == 64
    assert _count(build_generator(config)) == generator_vae


@pytest.mark.parametrize("settings, mode, channels, generator, generator_vae", GENERATOR_TABLE)
def test_generator_counts(settings, mode, channels, generator, generator_vae):
    """Every row, with and without the VAE, from generators of widths 1, 2 and 3.

    Every layer's channels are base_filters times a constant (SPADE's hidden 128 and the
    semantic and latent sizes do not change with it), so a count is a polynomial of degree
    2 in base_filters: three widths fix it, and at 64 it must give the table's number.
    (test_a_full_size_generator_counts_the_table builds one row at 64 for real.)"""
    config = ModelConfig(num_upsampling_layers=mode, **settings)
    assert config.semantic_channels == channels
    for use_vae, expected in ((False, generator), (True, generator_vae)):
        counts = [(width, _count(build_generator(dataclasses.replace(
            config, use_vae=use_vae, base_filters=width)))) for width in SMALL_WIDTHS]
        assert _at(counts, 64) == expected, (use_vae, counts)


@pytest.mark.parametrize("settings, discriminator", DISCRIMINATOR_TABLE)
def test_discriminator_counts(settings, discriminator):
    assert _count(build_discriminator(ModelConfig(**settings))) == discriminator


def test_encoder_count():
    assert _count(build_encoder(ModelConfig())) == ENCODER_COUNT


def test_the_table_is_what_the_suites_pytorch_networks_count():
    torch = import_torch()  # under `make test` a missing torch is a failure, not a skip
    from spade_tf.testing import torch_reference as reference

    with torch.device("meta"):
        for settings, mode, channels, generator, generator_vae in GENERATOR_TABLE:
            for use_vae, expected in ((False, generator), (True, generator_vae)):
                network = reference.SPADEGenerator(
                    channels, crop_size=settings.get("crop_size", 256),
                    aspect_ratio=settings.get("aspect_ratio", 1.0),
                    num_upsampling_layers=mode, use_vae=use_vae)
                assert reference.count_trainable(network) == expected, (settings, mode, use_vae)
        for settings, expected in DISCRIMINATOR_TABLE:
            channels = ModelConfig(**settings).semantic_channels
            network = reference.MultiscaleDiscriminator(channels + 3)
            assert reference.count_trainable(network) == expected, settings
        assert reference.count_trainable(reference.ConvEncoder()) == ENCODER_COUNT


@pytest.mark.parametrize("height, width, expected", [
    (256, 256, [(35, 35), (19, 19)]),
    (256, 512, [(35, 67), (19, 35)]),
])
def test_discriminator_output_shapes(height, width, expected):
    discriminator = build_discriminator(ModelConfig(**CITYSCAPES))
    outputs = discriminator({"semantic": tf.zeros((1, height, width, 36)),
                             "image": tf.zeros((1, height, width, 3))})
    assert [tuple(scale[-1].shape[1:3]) for scale in outputs] == expected
    assert [len(scale) for scale in outputs] == [5, 5]
    assert all(scale[-1].shape[-1] == 1 for scale in outputs)
