"""Converted generators with instance norm or 'most' upsampling compute what PyTorch does.

test_parity.py covers batch norm with 'normal' and 'more'; these are the other two
settings of the reference's generator: ``norm_type: instance`` (its SPADE norms keep no
running statistics, so the checkpoint has none) and ``num_upsampling_layers: most`` (an
extra upsampling after G_middle_0 and the up_4 block with base_filters / 2 channels).
Each is run in inference mode and in training mode (batch or instance statistics of the
batch, one spectral-norm power iteration), on the same converted weights.
"""

import numpy as np
import pytest
import tensorflow as tf
from support import import_torch
from support.reference_checkpoints import tiny_config

from spade_tf.convert import convert_reference_checkpoints
from spade_tf.model_dir import load_model_dir
from spade_tf.models import build_semantic_input
from spade_tf.testing import torch_reference as reference

torch = import_torch()

TOLERANCE = 1e-4  # as test_parity.py; measured up to 6e-6 here (float32)


def _generator_pair(config, save, tmp_path, seed=0):
    model = config.model
    network = reference.SPADEGenerator(
        model.semantic_channels, crop_size=model.crop_size, aspect_ratio=model.aspect_ratio,
        num_upsampling_layers=model.num_upsampling_layers, use_vae=model.use_vae,
        base_filters=model.base_filters, latent_dim=model.latent_dim,
        norm_type="instance" if model.norm_type == "instance" else "batch",
        spade_hidden=model.spade_hidden_filters)
    reference.randomize_(network, seed)
    out = convert_reference_checkpoints(config, tmp_path / "model",
                                        generator=save(network, "latest_net_G.pth"))
    return network, load_model_dir(out).generator


def _inputs(config, batch=2, seed=0):
    model = config.model
    height, width = model.image_size
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, model.num_classes, (batch, height // 4, width // 4))
    labels = labels.repeat(4, 1).repeat(4, 2)
    labels[:, : height // 4, : width // 4] = model.dontcare_label
    instances = rng.integers(0, 4, (batch, height // 8, width // 8)).repeat(8, 1).repeat(8, 2)
    latent = rng.standard_normal((batch, model.latent_dim)).astype(np.float32)
    return labels.astype(np.int32), instances.astype(np.int32), latent


def _run_both(config, network, generator, training: bool):
    labels, instances, latent = _inputs(config)
    model = config.model
    semantic = reference.semantic_one_hot(labels, model.num_classes, model.dontcare_label,
                                          instances)
    network.train(training)
    with torch.no_grad():
        expected = network(semantic, torch.from_numpy(latent) if model.use_vae else None)
    inputs = {"semantic": build_semantic_input(model)(labels, instances)}
    if model.use_vae:
        inputs["latent"] = tf.constant(latent)
    actual = generator(inputs, training=training).numpy().transpose(0, 3, 1, 2)
    return actual, expected.numpy()


CASES = [
    # (settings, has up_4)
    ({"norm_type": "instance"}, False),
    ({"norm_type": "instance", "num_upsampling_layers": "more", "crop_size": 128,
      "aspect_ratio": 2.0, "use_vae": True}, False),
    ({"num_upsampling_layers": "most", "crop_size": 256}, True),
    ({"num_upsampling_layers": "most", "crop_size": 256, "aspect_ratio": 2.0,
      "use_vae": True}, True),
    ({"num_upsampling_layers": "most", "crop_size": 256, "norm_type": "instance"}, True),
]


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("settings, has_up_4", CASES,
                         ids=["instance", "instance-more-vae", "most", "most-vae",
                              "most-instance"])
def test_generator_parity(settings, has_up_4, training, save, tmp_path):
    config = tiny_config(spade_hidden_filters=16, **settings)
    network, generator = _generator_pair(config, save, tmp_path)
    assert hasattr(network, "up_4") == has_up_4
    assert any(layer.name == "up_4" for layer in generator.layers) == has_up_4
    state = network.state_dict()
    assert any(k.endswith("running_mean") for k in state) == (config.model.norm_type != "instance")

    actual, expected = _run_both(config, network, generator, training)
    assert actual.shape == expected.shape == (2, 3, *config.model.image_size)
    assert expected.std() > 0.1  # a meaningful image, not a constant
    assert np.abs(actual - expected).max() < TOLERANCE
    if training:  # the power iteration and the running statistics went the same way
        checked = 0
        for key, value in network.state_dict().items():
            if key.endswith(("weight_u", "running_var")):
                block, _, rest = key.partition(".")
                checked += 1
                keras_value = _keras_state(generator.get_layer(block), rest)
                np.testing.assert_allclose(keras_value, value.numpy(), atol=1e-5)
        assert checked > 10


def _keras_state(block, key: str) -> np.ndarray:
    """The Keras variable of a residual block's reference key ``norm_0...`` / ``conv_0...``."""
    parts = key.split(".")
    layer = getattr(block, parts[0])
    if parts[-1] == "weight_u":
        return layer.u.numpy()
    return getattr(layer, parts[1]).moving_variance.numpy()
