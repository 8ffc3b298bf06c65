"""Reduced-precision inference: same weights, bf16/fp16 compute, outputs close to float32."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.models import calibrated_generator

from spade_cli.export import main as export_main
from spade_tf.config import Config, ConfigError, ExportConfig, ModelConfig
from spade_tf.inference_rules import to_uint8
from spade_tf.model_dir import ModelDir, load_model_dir, save_model_dir
from spade_tf.models import build_encoder, build_semantic_input
from spade_tf.precision import PrecisionError, network_precision, with_precision

MODEL = ModelConfig(num_classes=5, use_instance_edges=True, crop_size=64, base_filters=4,
                    spade_hidden_filters=8)
VAE = dataclasses.replace(MODEL, use_vae=True, latent_dim=8, encoder_filters=4,
                          encoder_input_size=128)


def _semantic_of(labels: np.ndarray) -> tf.Tensor:
    return build_semantic_input(MODEL)(labels.astype(np.int32), labels.astype(np.int32))


def _semantic(seed: int) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    return _semantic_of(np.repeat(np.repeat(rng.integers(0, 5, (2, 8, 8)), 8, 1), 8, 2))


@pytest.fixture(scope="module")
def calibrated():
    return calibrated_generator(MODEL, lambda step: {"semantic": _semantic(step)})


def test_copies_compute_in_the_reduced_type_with_the_same_weights(calibrated):
    generator = calibrated
    policy = keras.mixed_precision.dtype_policy().name
    half = with_precision(generator, "bfloat16")
    assert keras.mixed_precision.dtype_policy().name == policy  # restored
    assert network_precision(generator) == "float32" and network_precision(half) == "bfloat16"
    assert with_precision(half, "bfloat16") is half
    for ours, theirs in zip(generator.weights, half.weights, strict=True):
        assert ours.path == theirs.path and theirs.dtype == "float32"
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


# Measured on the calibrated generator (outputs within +-0.994): bfloat16 mean 0.0063, max
# 0.041; float16 mean 0.00075, max 0.0078. Tolerances are about twice those.
@pytest.mark.parametrize("precision, mean_tolerance, max_tolerance", [
    ("bfloat16", 0.0125, 0.08), ("float16", 0.0015, 0.016)])
def test_output_stays_close_to_float32(calibrated, precision, mean_tolerance, max_tolerance):
    generator = calibrated
    inputs = {"semantic": _semantic(99)}
    reference = generator(inputs, training=False).numpy()
    reduced = with_precision(generator, precision)(inputs, training=False)
    assert reduced.dtype == tf.float32
    difference = np.abs(reduced.numpy() - reference)
    assert reference.std() > 0.05 and np.mean(np.abs(reference) > 0.99) < 0.5  # not saturated
    assert difference.mean() < mean_tolerance, difference.mean()
    assert difference.max() < max_tolerance, difference.max()


def test_encoder_copy_matches_float32():
    keras.utils.set_random_seed(4)
    encoder = build_encoder(VAE)
    photo = tf.random.stateless_uniform((1, 128, 128, 3), (4, 5), -1.0, 1.0)
    reference = encoder(photo, training=False)["mean"].numpy()
    reduced = with_precision(encoder, "bfloat16")(photo, training=False)["mean"].numpy()
    assert network_precision(with_precision(encoder, "bfloat16")) == "bfloat16"
    # bf16 keeps ~3 significant digits; six convolutions leave a few per cent (measured:
    # 3.1% of the largest mean).
    np.testing.assert_allclose(reduced, reference, atol=0.06 * np.abs(reference).max())


def test_a_model_folder_loads_under_the_mixed_policy_as_with_precision_makes_it(
        calibrated, tmp_path):
    folder = save_model_dir(tmp_path / "model", ModelDir(Config(model=MODEL), calibrated))
    loaded = load_model_dir(folder, networks=("generator",), precision="bfloat16").generator
    assert network_precision(loaded) == "bfloat16"
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored
    assert {variable.dtype for variable in loaded.weights} == {"float32"}
    inputs = {"semantic": _semantic(3)}
    expected = with_precision(calibrated, "bfloat16")(inputs, training=False).numpy()
    np.testing.assert_array_equal(loaded(inputs, training=False).numpy(), expected)
    with pytest.raises(PrecisionError, match="precision must be one of"):
        load_model_dir(folder, precision="int8")


def test_unknown_precision_is_refused(calibrated):
    with pytest.raises(PrecisionError, match="float32, bfloat16, float16; got 'int8'"):
        with_precision(calibrated, "int8")
    with pytest.raises(ConfigError, match="export.precision"):
        ExportConfig(precision="half")


def test_bfloat16_export_serves_close_to_the_float32_generator(calibrated, tmp_path):
    folder = save_model_dir(tmp_path / "model", ModelDir(Config(model=MODEL), calibrated))
    assert export_main(["--model-dir", str(folder), "--export-base", str(tmp_path / "exports"),
                        "--no-warmup", "--precision", "bfloat16"]) == 0
    export = tmp_path / "exports" / "spade" / "1"
    assert json.loads((export / "assets.extra" / "spade_model.json").read_text())[
        "precision"] == "bfloat16"
    # Spectral norm folded (no power-iteration vectors), weights stored in bfloat16.
    reader = tf.train.load_checkpoint(str(export / "variables" / "variables"))
    shapes = reader.get_variable_to_shape_map()
    sizes = {tf.float32: 0, tf.bfloat16: 0}
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if "VARIABLE_VALUE" in name:
            sizes[dtype] += int(np.prod(shapes[name]))
    statistics = sum(int(np.prod(v.shape)) for v in calibrated.weights if "moving_" in v.path)
    spectral = sum(int(np.prod(v.shape)) for v in calibrated.weights
                   if v.path.endswith(("/u", "/v")))
    assert sizes == {tf.float32: statistics,
                     tf.bfloat16: calibrated.count_params() - statistics - spectral}
    served = tf.saved_model.load(str(export)).signatures["serving_default"]
    conv_types = {node.attr["T"].type for function in served.graph.as_graph_def().library.function
                  for node in function.node_def if node.op == "Conv2D"}
    assert conv_types == {tf.bfloat16.as_datatype_enum}

    labels = np.repeat(np.repeat(np.random.default_rng(7).integers(0, 5, (2, 8, 8)), 8, 1), 8, 2)
    image = served(label_ids=tf.constant(labels, tf.int32),
                   instance_ids=tf.constant(labels, tf.int32))["image"].numpy()
    reference = calibrated({"semantic": _semantic_of(labels)}, training=False).numpy()
    reference = to_uint8(reference).numpy().astype(np.float64)
    difference = np.abs(image.astype(np.float64) - reference)
    # Measured: 0.81 grey levels on average, 6 at most.
    assert reference.std() > 5
    assert difference.mean() < 1.6 and difference.max() <= 12, (difference.mean(),
                                                                  difference.max())


def test_a_model_that_keeps_its_saved_dtypes_is_refused():
    inputs = keras.Input((8, 8, 3))
    plain = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    with pytest.raises(PrecisionError, match="Functional does not follow the dtype policy"):
        with_precision(plain, "bfloat16")
