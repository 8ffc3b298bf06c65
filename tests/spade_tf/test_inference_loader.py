"""Networks folded for inference: spectral norm in fixed kernels, weights in the compute type."""

import dataclasses
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.models import calibrated_generator

from spade_tf import inference_loader as folding
from spade_tf.config import Config, ExportConfig, ModelConfig
from spade_tf.inference_loader import FoldingError, fold_for_inference, load_for_inference
from spade_tf.layers import SpectralNormalization
from spade_tf.model_dir import ModelDir, load_model_dir, save_model_dir
from spade_tf.models import build_encoder, build_generator, build_semantic_input
from spade_tf.precision import PrecisionError, network_precision

MODEL = ModelConfig(num_classes=5, use_instance_edges=True, crop_size=64, base_filters=4,
                    spade_hidden_filters=8)
VAE = dataclasses.replace(MODEL, use_vae=True, latent_dim=8, encoder_filters=4,
                          encoder_input_size=128)


def _semantic(seed: int) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.repeat(rng.integers(0, 5, (2, 8, 8)), 8, 1), 8, 2).astype(np.int32)
    return build_semantic_input(MODEL)(labels, labels)


@pytest.fixture(scope="module")
def calibrated():
    return calibrated_generator(MODEL, lambda step: {"semantic": _semantic(step)})


def _spectral_layers(network):
    return [layer for layer in network._flatten_layers()
            if isinstance(layer, SpectralNormalization)]


def test_float32_fold_computes_what_the_network_computes(calibrated):
    inputs = {"semantic": _semantic(42)}
    reference = calibrated(inputs, training=False).numpy()
    folded = fold_for_inference(calibrated)(inputs, training=False).numpy()
    assert reference.std() > 0.05 and np.mean(np.abs(reference) > 0.99) < 0.5  # not saturated
    np.testing.assert_allclose(folded, reference, atol=2e-6)


def test_the_copy_has_fixed_kernels_and_no_power_iteration_vectors(calibrated):
    wrappers = _spectral_layers(calibrated)
    assert len(wrappers) == 2 * 7 + 4  # conv_0, conv_1 in 7 blocks; conv_s in 4 of them
    folded = fold_for_inference(calibrated)
    assert not _spectral_layers(folded) and not folded.trainable
    assert len(folded.weights) == len(calibrated.weights) - 2 * len(wrappers)
    assert not [v.path for v in folded.weights if v.path.endswith(("/u", "/v"))]
    conv = calibrated.get_layer("up_1").conv_0
    np.testing.assert_array_equal(folded.get_layer("up_1").conv_0.kernel.numpy(),
                                  conv.normalized_kernel(training=False).numpy())


def test_bfloat16_copy_stores_its_weights_in_bfloat16(calibrated):
    folded = fold_for_inference(calibrated, "bfloat16")
    assert network_precision(folded) == "bfloat16"
    by_kind = {}
    for variable in folded.weights:
        kind = "statistics" if "moving_" in variable.path else "parameters"
        by_kind.setdefault(kind, set()).add(variable.dtype)
    assert by_kind == {"parameters": {"bfloat16"}, "statistics": {"float32"}}
    # The original is untouched and the global policy restored.
    assert network_precision(calibrated) == "float32"
    assert keras.mixed_precision.dtype_policy().name == "float32"


# Same bounds as the mixed-precision copy (test_precision.py: measured bf16 mean 0.0063,
# max 0.041 there); the folded kernels are rounded once, not on every call.
def test_bfloat16_fold_stays_close_to_float32(calibrated):
    inputs = {"semantic": _semantic(99)}
    reference = calibrated(inputs, training=False).numpy()
    reduced = fold_for_inference(calibrated, "bfloat16")(inputs, training=False)
    assert reduced.dtype == tf.float32
    difference = np.abs(reduced.numpy() - reference)
    assert difference.mean() < 0.0125 and difference.max() < 0.08, (difference.mean(),
                                                                     difference.max())


def test_vae_generator_and_encoder_fold():
    keras.utils.set_random_seed(5)
    encoder = build_encoder(VAE)
    photo = tf.random.stateless_uniform((1, 128, 128, 3), (4, 5), -1.0, 1.0)
    reference = encoder(photo, training=False)
    folded = fold_for_inference(encoder)(photo, training=False)
    assert len(_spectral_layers(encoder)) == 6
    for key in ("mean", "log_variance"):
        assert np.abs(reference[key].numpy()).max() > 1e-4
        np.testing.assert_allclose(folded[key].numpy(), reference[key].numpy(),
                                   rtol=1e-5, atol=1e-6)
    generator = calibrated_generator(VAE, _vae_inputs)
    inputs = _vae_inputs(7)
    np.testing.assert_allclose(fold_for_inference(generator)(inputs, training=False).numpy(),
                               generator(inputs, training=False).numpy(), atol=2e-6)


def _vae_inputs(seed: int) -> dict:
    latent = tf.random.stateless_normal((2, VAE.latent_dim), (seed, 0))
    return {"semantic": _semantic(seed), "latent": latent}


def test_networks_it_cannot_fold_are_refused():
    inputs = keras.Input((8, 8, 3))
    plain = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    with pytest.raises(FoldingError, match="is not a spade_tf network"):
        fold_for_inference(plain)


def test_a_model_folder_loads_folded_each_float32_network_freed_before_its_copy(
        tmp_path, monkeypatch):
    keras.utils.set_random_seed(6)
    folder = save_model_dir(tmp_path / "model", ModelDir(
        Config(model=VAE, export=ExportConfig(precision="bfloat16")), build_generator(VAE),
        encoder=build_encoder(VAE)))
    originals = load_model_dir(folder, networks=("generator", "encoder"))
    expected = {role: fold_for_inference(getattr(originals, role), "bfloat16")
                for role in ("generator", "encoder")}
    # Which float32 networks are still alive when each copy gets its weights.
    loaded_networks, alive_at_fill = {}, []
    original_load, original_fill = folding.load_model_dir, folding._fill

    def load(*args, **kwargs):
        result = original_load(*args, **kwargs)
        loaded_networks.update(generator=weakref.ref(result.generator),
                               encoder=weakref.ref(result.encoder))
        return result

    def fill(copy, name, values, precision):
        alive_at_fill.append(sorted(role for role, ref in loaded_networks.items()
                                    if ref() is not None))
        return original_fill(copy, name, values, precision)

    monkeypatch.setattr(folding, "load_model_dir", load)
    monkeypatch.setattr(folding, "_fill", fill)
    loaded = load_for_inference(folder)  # the config's export.precision
    assert alive_at_fill == [["encoder"], []]
    assert loaded.config.export.precision == "bfloat16"
    for role, copy in expected.items():
        folded = getattr(loaded, role)
        assert network_precision(folded) == "bfloat16" and not folded.trainable
        assert [v.path for v in folded.weights] == [v.path for v in copy.weights]
        for actual, wanted in zip(folded.weights, copy.weights, strict=True):
            assert actual.dtype == wanted.dtype
            np.testing.assert_array_equal(actual.numpy(), wanted.numpy())
    assert network_precision(load_for_inference(folder, "float32").generator) == "float32"


def test_an_unknown_precision_fails_before_loading(tmp_path):
    with pytest.raises(PrecisionError, match="precision must be one of"):
        load_for_inference(tmp_path / "no-such-model", "float8")
