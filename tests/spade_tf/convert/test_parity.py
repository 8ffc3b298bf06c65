"""Converted reference networks compute what the PyTorch networks compute (< 1e-4)."""

import numpy as np
import pytest
import tensorflow as tf
from support import import_torch
from support.reference_checkpoints import (
    tiny_config,
    torch_discriminator,
    torch_encoder,
    torch_generator,
)

from spade_tf.convert import convert_reference_checkpoints
from spade_tf.model_dir import load_model_dir
from spade_tf.models import build_semantic_input
from spade_tf.testing import torch_reference as reference

torch = import_torch()

TOLERANCE = 1e-4


def _labels(config, batch=2, seed=0):
    height, width = config.model.image_size
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, config.model.num_classes, (batch, height, width))
    labels[:, : height // 4, : width // 4] = config.model.dontcare_label
    # Blocky instance maps, so edges are lines rather than noise.
    instances = rng.integers(0, 4, (batch, height // 8, width // 8)).repeat(8, 1).repeat(8, 2)
    return labels.astype(np.int32), instances.astype(np.int32)


def _torch_semantic(config, labels, instances):
    model = config.model
    return reference.semantic_one_hot(labels, model.num_classes,
                                      dontcare_label=model.dontcare_label,
                                      instance_ids=instances)


def _nchw(array) -> np.ndarray:
    return np.asarray(array).transpose(0, 3, 1, 2)


def _max_difference(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.mark.parametrize("mode, crop_size, aspect_ratio, use_vae, sn_api, data_parallel", [
    ("normal", 64, 1.0, False, "old", False),
    ("more", 128, 2.0, False, "new", False),
    ("normal", 64, 1.0, True, "old", True),
    ("more", 128, 2.0, True, "old", False),
])
def test_generator_parity(mode, crop_size, aspect_ratio, use_vae, sn_api, data_parallel,
                          save, tmp_path):
    config = tiny_config(num_upsampling_layers=mode, crop_size=crop_size,
                         aspect_ratio=aspect_ratio, use_vae=use_vae)
    network = torch_generator(config, sn_api=sn_api)
    path = save(network, "latest_net_G.pth", data_parallel=data_parallel)
    out = convert_reference_checkpoints(config, tmp_path / "model", generator=path)
    generator = load_model_dir(out).generator

    labels, instances = _labels(config)
    latent = np.random.default_rng(1).standard_normal((2, config.model.latent_dim))
    latent = latent.astype(np.float32)
    with torch.no_grad():
        expected = network(_torch_semantic(config, labels, instances),
                           torch.from_numpy(latent) if use_vae else None).numpy()
    semantic = build_semantic_input(config.model)(labels, instances)
    inputs = {"semantic": semantic, **({"latent": tf.constant(latent)} if use_vae else {})}
    actual = _nchw(generator(inputs, training=False))
    assert expected.std() > 0.1  # a meaningful image, not a constant
    assert _max_difference(actual, expected) < TOLERANCE


def test_discriminator_parity_on_every_feature(save, tmp_path):
    config = tiny_config(disc_layers=4, num_discriminators=2)
    network = torch_discriminator(config, sn_api="new")
    path = save(network, "latest_net_D.pth")
    generator_path = save(torch_generator(config), "latest_net_G.pth")
    out = convert_reference_checkpoints(config, tmp_path / "model", generator=generator_path,
                                        discriminator=path)
    discriminator = load_model_dir(out).discriminator

    labels, instances = _labels(config, seed=3)
    semantic = _torch_semantic(config, labels, instances)
    image = torch.rand((2, 3, 64, 64)) * 2 - 1
    with torch.no_grad():
        expected = network(torch.cat([semantic, image], dim=1))
    actual = discriminator({"semantic": semantic.numpy().transpose(0, 2, 3, 1),
                            "image": image.numpy().transpose(0, 2, 3, 1)}, training=False)
    assert len(actual) == len(expected) == 2
    for actual_scale, expected_scale in zip(actual, expected, strict=True):
        assert len(actual_scale) == 5
        for got, want in zip(actual_scale, expected_scale, strict=True):
            assert _max_difference(_nchw(got), want.numpy()) < TOLERANCE


@pytest.mark.parametrize("height, width", [(256, 256), (96, 160)])
def test_encoder_parity(height, width, save, tmp_path):
    config = tiny_config(use_vae=True)
    encoder_network = torch_encoder(config)
    out = convert_reference_checkpoints(
        config, tmp_path / "model", generator=save(torch_generator(config), "G.pth"),
        encoder=save(encoder_network, "E.pth"))
    encoder = load_model_dir(out).encoder

    image = np.random.default_rng(4).uniform(-1, 1, (2, height, width, 3)).astype(np.float32)
    with torch.no_grad():
        mean, log_variance = encoder_network(torch.from_numpy(_nchw(image)))
    actual = encoder(tf.constant(image), training=False)
    assert _max_difference(actual["mean"], mean.numpy()) < TOLERANCE
    assert _max_difference(actual["log_variance"], log_variance.numpy()) < TOLERANCE


def test_spectral_norm_vectors_and_statistics_are_carried_over(save, tmp_path):
    """Training can resume: u, v and running statistics equal the checkpoint's."""
    config = tiny_config()
    network = torch_generator(config)
    out = convert_reference_checkpoints(config, tmp_path / "model",
                                        generator=save(network, "G.pth"))
    generator = load_model_dir(out).generator
    block = generator.get_layer("up_0")
    np.testing.assert_array_equal(block.conv_s.u.numpy(), network.up_0.conv_s.weight_u.numpy())
    np.testing.assert_array_equal(block.conv_0.v.numpy(), network.up_0.conv_0.weight_v.numpy())
    norm = network.up_0.norm_1.param_free_norm
    np.testing.assert_array_equal(block.norm_1.param_free_norm.moving_variance.numpy(),
                                  norm.running_var.numpy())
