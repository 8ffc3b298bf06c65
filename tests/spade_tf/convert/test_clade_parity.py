"""CLADE generators converted from the official fork's structure compute what it computes
(< 1e-4), its checkpoints are told apart from SPADE's, and the parameter counts agree."""

import numpy as np
import pytest
import tensorflow as tf
from support import import_torch
from support.reference_checkpoints import tiny_config, torch_generator

from spade_tf.config import ModelConfig
from spade_tf.convert import ConversionError, convert_reference_checkpoints
from spade_tf.model_dir import load_model_dir
from spade_tf.models import build_generator, build_semantic_input
from spade_tf.testing import torch_reference as reference

torch = import_torch()

TOLERANCE = 1e-4


def _inputs(config, seed=0):
    """Label ids with a don't-care corner, blocky instance maps; the NCHW torch semantic
    map and ours."""
    model = config.model
    height, width = model.image_size
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, model.num_classes, (2, height, width)).astype(np.int32)
    labels[:, : height // 4, : width // 4] = model.dontcare_label
    instances = rng.integers(0, 4, (2, height // 8, width // 8)).repeat(8, 1).repeat(8, 2)
    instances = instances.astype(np.int32) if model.use_instance_edges else None
    torch_semantic = reference.semantic_one_hot(labels, model.num_classes,
                                                dontcare_label=model.dontcare_label,
                                                instance_ids=instances)
    return torch_semantic, build_semantic_input(model)(labels, instances)


@pytest.mark.parametrize("edges, vae, mode, crop_size, aspect_ratio, sn_api", [
    (False, False, "normal", 64, 1.0, "old"),
    (True, True, "more", 128, 2.0, "new"),
])
def test_generator_parity(edges, vae, mode, crop_size, aspect_ratio, sn_api, save, tmp_path):
    config = tiny_config(norm_mode="clade", use_instance_edges=edges, use_vae=vae,
                         num_upsampling_layers=mode, crop_size=crop_size,
                         aspect_ratio=aspect_ratio)
    network = torch_generator(config, sn_api=sn_api)
    path = save(network, "best_net_G.pth", data_parallel=vae)
    generator = load_model_dir(
        convert_reference_checkpoints(config, tmp_path / "model", generator=path)).generator
    if edges:  # the official rule: every conv after a CLADE reads one channel more
        assert generator.get_layer("up_0").conv_0.layer.kernel.shape[2] == 16 * 4 + 1

    torch_semantic, semantic = _inputs(config)
    latent = np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)
    with torch.no_grad():
        expected = network(torch_semantic, torch.from_numpy(latent) if vae else None).numpy()
    inputs = {"semantic": semantic, **({"latent": tf.constant(latent)} if vae else {})}
    actual = generator(inputs, training=False).numpy().transpose(0, 3, 1, 2)
    assert expected.std() > 0.1
    assert np.abs(actual.astype(np.float64) - expected).max() < TOLERANCE


@pytest.mark.parametrize("checkpoint, config, words", [
    ({"norm_mode": "clade"}, {}, "is a CLADE generator (its norms hold per-class tables), "
     "but configs/tiny.yaml has model.norm_mode='spade': add --set model.norm_mode=clade."),
    ({}, {"norm_mode": "clade"}, "add --set model.norm_mode=spade"),
    # 6 table rows + edges = 7 channels, as 7 classes without edges: the edges are named.
    ({"norm_mode": "clade"}, {"norm_mode": "clade", "num_classes": 7,
                              "use_dontcare_label": False, "use_instance_edges": False},
     "trained with instance edges (model.use_instance_edges=false)"),
])
def test_mismatched_norm_modes_are_explained(checkpoint, config, words, save, tmp_path):
    path = save(torch_generator(tiny_config(**checkpoint)), "G.pth")
    with pytest.raises(ConversionError) as error:
        convert_reference_checkpoints(tiny_config(**config), tmp_path / "out",
                                      generator=path, config_name="configs/tiny.yaml")
    assert words in str(error.value)
    assert not (tmp_path / "out").exists()


def test_clade_icpe_checkpoints_are_refused(save, tmp_path):
    config = tiny_config(norm_mode="clade")
    path = save(torch_generator(config, add_dist=True), "G.pth")
    with pytest.raises(ConversionError, match="CLADE-ICPE one \\(trained with --add_dist"):
        convert_reference_checkpoints(config, tmp_path / "out", generator=path)


# CLADE's generators (base_filters 64), counted on the official structure's PyTorch networks
# (meta device: no memory); SPADE's are in test_parameter_counts.py (96,492,483 for ADE20K).
CLADE_COUNTS = [
    ({"num_classes": 150, "use_dontcare_label": True}, 71_427_267),
    ({"num_classes": 182, "use_dontcare_label": True, "use_instance_edges": True}, 72_505_383),
    ({"num_classes": 35, "use_instance_edges": True, "crop_size": 512, "aspect_ratio": 2.0,
      "num_upsampling_layers": "more"}, 67_901_991),
]


def test_parameter_counts_equal_the_official_structures():
    with torch.device("meta"):
        for settings, expected in CLADE_COUNTS:
            model = ModelConfig(norm_mode="clade", **settings)
            network = reference.SPADEGenerator(
                model.semantic_channels, crop_size=model.crop_size,
                aspect_ratio=model.aspect_ratio,
                num_upsampling_layers=model.num_upsampling_layers, norm_mode="clade",
                use_instance_edges=model.use_instance_edges)
            assert reference.count_trainable(network) == expected, settings
    # The ADE20K generator in Keras too (the others differ from it only in table rows and
    # the edge channel, which the parity tests cover).
    generator = build_generator(ModelConfig(norm_mode="clade", **CLADE_COUNTS[0][0]))
    assert sum(int(np.prod(w.shape)) for w in generator.trainable_weights) == 71_427_267
