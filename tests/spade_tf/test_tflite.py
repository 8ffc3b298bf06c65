"""TFLite export (spade_tf.tflite, spade-export --format tflite, spade-synthesize --tflite):
builtin operators only, the metadata in the flatbuffer, parity with the generator and with
the SavedModel, and the commands' mistakes."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from support import ROOT, import_torch

from spade_cli.export import main as export_main
from spade_cli.synthesize import main as synthesize_main
from spade_tf import signatures as sig
from spade_tf import tflite
from spade_tf.inference_loader import load_for_inference
from spade_tf.inference_rules import seeded_latent
from spade_tf.models import build_semantic_input


def _maps(model, seed=0):
    rng = np.random.default_rng(seed)
    height, width = model.image_size
    labels = rng.integers(0, model.num_classes, (1, height, width)).astype(np.int32)
    instances = rng.integers(0, 3, (1, height, width)).astype(np.int32)
    return labels, instances


def _builtins_only(model: bytes) -> list[str]:
    """Asserts what every exported file must be; returns its operator names."""
    names = tflite.operator_names(model)
    # No Select TF (Flex) or custom operators: the GPU and NNAPI delegates run these.
    assert "CONV_2D" in names and not [name for name in names
                                       if name.startswith("custom:")], names
    # Weights frozen into the file (not left as resource variables to read).
    assert "VAR_HANDLE" not in names and "READ_VARIABLE" not in names
    return names


def _interpreter(model: bytes):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model).get_signature_runner(sig.DEFAULT_SIGNATURE)


@pytest.fixture(scope="module")
def vae_files(exports, tmp_path_factory):
    """The session's VAE export (instance edges) as .tflite in all three quantizations."""
    export = exports("spade")
    base = tmp_path_factory.mktemp("tflite")
    return export, {quantization: tflite.export_tflite(export.model_dir, base, "spade",
                                                       quantization)
                    for quantization in tflite.QUANTIZATIONS}


def test_builtin_operators_only_and_the_metadata_inside(vae_files):
    export, files = vae_files
    assert files["float32"].name == "spade.tflite"
    assert files["int8"].name == "spade.int8.tflite"
    sizes = {}
    for quantization, path in files.items():
        model = path.read_bytes()
        sizes[quantization] = len(model)
        _builtins_only(model)
        metadata = tflite.read_metadata(model)
        assert metadata["format"] == "tflite" and metadata["quantization"] == quantization
        assert metadata["image_size"] == [64, 64] and metadata["use_vae"]
        assert metadata["use_instance_edges"] and metadata["num_classes"] == 4
        assert metadata["classes"] == json.loads(
            (export.version_dir / "assets.extra" / "spade_model.json").read_text())["classes"]
    # float16 halves the weights, int8 quarters them (plus the graph and metadata).
    assert sizes["float16"] < 0.6 * sizes["float32"]
    assert sizes["int8"] < 0.35 * sizes["float32"]


def test_float32_matches_the_generator_and_float16_stays_close(vae_files):
    export, _ = vae_files
    loaded = load_for_inference(export.model_dir, "float32")
    model = loaded.config.model
    labels, instances = _maps(model)
    latent = seeded_latent(tf.constant([5], tf.int64), model.latent_dim).numpy()
    semantic = build_semantic_input(model)(labels, instances)
    expected = loaded.generator({"semantic": semantic, "latent": tf.constant(latent)},
                                training=False).numpy()
    outputs = {}
    for quantization in tflite.QUANTIZATIONS:
        raw = tflite.convert(loaded.generator, model, quantization, raw=True)
        outputs[quantization] = _interpreter(raw)(label_ids=labels, instance_ids=instances,
                                                  latent=latent)[sig.IMAGE]
    assert expected.std() > 0.3  # an image, not a constant
    np.testing.assert_allclose(outputs["float32"], expected, atol=1e-4)
    # In [0, 1] image units (the generator's [-1, 1] halved). A random network's outputs
    # sit at tanh's ends, where a small change in float16 flips a rare pixel from one end
    # to the other, so the mean is what is bounded: float16 within 0.02.
    float16 = np.abs(outputs["float16"] - expected) / 2
    assert float16.mean() < 0.02 and (float16 > 0.02).mean() < 0.02, float16.mean()
    # int8 dynamic range: reported by the benchmark; here only that it is still the image.
    int8 = np.abs(outputs["int8"] - expected) / 2
    assert int8.mean() < 0.1, (int8.max(), int8.mean())


def test_the_uint8_image_is_the_saved_models(exports, tmp_path):
    export = exports("plain")  # deterministic serving_default: no VAE, no instance edges
    path = tflite.export_tflite(export.model_dir, tmp_path, "plain")
    labels, _ = _maps(export.model, seed=1)
    lite = tflite.TFLiteRunner(path).run(labels)
    served = tf.saved_model.load(str(export.version_dir)).signatures[sig.DEFAULT_SIGNATURE](
        label_ids=tf.constant(labels))[sig.IMAGE].numpy()
    assert lite.dtype == np.uint8 and lite.shape == served.shape == (1, 64, 64, 3)
    difference = np.abs(lite.astype(int) - served.astype(int))
    # The same float image to ~1e-6: only values at a rounding boundary may differ by one.
    assert difference.max() <= 1 and (difference > 0).mean() < 0.001


def test_spade_synthesize_gives_the_export_s_and_the_model_folder_s_images(vae_files, tmp_path):
    export, files = vae_files
    labels, instances = _maps(export.model, seed=2)
    label_file, instance_file = tmp_path / "map.png", tmp_path / "map_instance.png"
    Image.fromarray(labels[0].astype(np.uint8)).save(label_file)
    Image.fromarray(instances[0].astype(np.uint8)).save(instance_file)
    images = {}
    for option, source in (("--tflite", files["float32"]), ("--export", export.version_dir),
                           ("--model-dir", export.model_dir)):
        out = tmp_path / f"{option[2:]}.png"
        assert synthesize_main([option, str(source), "--labels", str(label_file),
                                "--instances", str(instance_file), "--seed", "3",
                                "--out", str(out)]) == 0
        images[option] = np.asarray(Image.open(out)).astype(int)
    for other in ("--export", "--model-dir"):
        difference = np.abs(images["--tflite"] - images[other])
        assert difference.max() <= 1 and (difference > 0).mean() < 0.001, other


def test_the_commands_mistakes_end_in_one_line(vae_files, tmp_path, capsys):
    export, files = vae_files
    base = files["float32"].parent
    args = ["--model-dir", str(export.model_dir), "--export-base", str(base)]
    assert export_main([*args, "--format", "tflite"]) == 2
    assert f"{files['float32']} exists already: remove it" in capsys.readouterr().err
    assert export_main([*args, "--format", "tflite", "--version", "3"]) == 2
    assert "--version applies to SavedModel exports" in capsys.readouterr().err
    assert export_main([*args, "--quantization", "int8"]) == 2
    assert "--quantization goes with --format tflite" in capsys.readouterr().err
    assert not (base / "spade").exists()

    label_file = tmp_path / "map.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(label_file)
    not_tflite = tmp_path / "model.tflite"
    not_tflite.write_bytes(b"not a flatbuffer at all")
    for source, words in [(tmp_path / "missing.tflite", "does not exist"),
                          (not_tflite, "")]:
        assert synthesize_main(["--tflite", str(source), "--labels", str(label_file),
                                "--out", str(tmp_path / "out.png")]) == 2
        error = capsys.readouterr().err
        assert error.startswith("spade-synthesize: error: ") and words in error
        assert error.count("\n") == 1, error
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photo)
    assert synthesize_main(["--tflite", str(files["int8"]), "--labels", str(label_file),
                            "--instances", str(label_file), "--style", str(photo),
                            "--out", str(tmp_path / "o.png")]) == 2
    assert "--style needs the style encoder" in capsys.readouterr().err


def test_a_clade_generator_converts_with_builtins_and_matches():
    import keras

    from spade_tf.config import ModelConfig
    from spade_tf.inference_loader import fold_for_inference
    from spade_tf.models import build_generator

    model = ModelConfig(num_classes=6, use_instance_edges=True, crop_size=32, base_filters=4,
                        norm_mode="clade")
    keras.utils.set_random_seed(4)
    generator = fold_for_inference(build_generator(model))
    for variable in generator.weights:  # CLADE's tables start at 1 and 0: give them values
        if variable.path.endswith(("gamma", "beta")):
            variable.assign(np.random.default_rng(1).normal(1, 0.5, variable.shape))
    labels, instances = _maps(model, seed=4)
    raw = tflite.convert(generator, model, raw=True)
    assert "GATHER" in _builtins_only(raw)
    got = _interpreter(raw)(label_ids=labels, instance_ids=instances)[sig.IMAGE]
    expected = generator({"semantic": build_semantic_input(model)(labels, instances)},
                         training=False).numpy()
    assert expected.std() > 0.1
    np.testing.assert_allclose(got, expected, atol=1e-4)


def _level_differences(images: dict, against: np.ndarray) -> dict:
    """Each image's difference from ``against`` in uint8 levels: (max, mean)."""
    differences = {name: np.abs(image.astype(int) - against) for name, image in images.items()}
    return {name: (int(difference.max()), float(difference.mean()))
            for name, difference in differences.items()}


def test_the_demo_models_files_are_builtins_only_and_give_its_saved_models_image(tmp_path):
    """configs/demo.yaml's generator (what ``make demo`` trains), with batch-norm statistics
    and an image spread as a trained one's: the model folder exported both ways."""
    from support.models import calibrated_generator

    from spade_tf.config import load_config
    from spade_tf.export import export_model
    from spade_tf.model_dir import ModelDir, save_model_dir

    config = load_config(ROOT / "configs" / "demo.yaml")
    semantic = build_semantic_input(config.model)
    generator = calibrated_generator(
        config.model, lambda step: {"semantic": semantic(*_maps(config.model, seed=step))})
    labels, instances = _maps(config.model, seed=99)
    folder = save_model_dir(tmp_path / "demo", ModelDir(config, generator))
    version = export_model(folder, tmp_path / "exports", "demo", warmup=False)
    served = tf.saved_model.load(str(version)).signatures[sig.DEFAULT_SIGNATURE](
        label_ids=tf.constant(labels), instance_ids=tf.constant(instances))[sig.IMAGE].numpy()
    assert served.std() > 20  # levels: an image, not a saturated sign pattern
    images = {}
    for quantization in tflite.QUANTIZATIONS:
        path = tflite.export_tflite(folder, tmp_path / "exports", "demo", quantization)
        _builtins_only(path.read_bytes())
        images[quantization] = tflite.TFLiteRunner(path).run(labels, instances)
    levels = _level_differences(images, served.astype(int))
    assert levels["float32"][0] <= 1, levels
    assert levels["float16"][1] < 0.02 * 255, levels
    assert levels["int8"][1] < 0.1 * 255, levels


def test_a_converted_ade20k_generator_is_builtins_only_and_matches(tmp_path):
    """The full-size ADE20K generator converted from the reference (calibrated batch norm,
    so the image is not saturated): float32 to 1e-4, float16 within 0.02, int8 bounded."""
    from support.reference_checkpoints import calibrate_batch_norm_, torch_generator

    from spade_tf.config import load_config
    from spade_tf.convert import convert_reference_checkpoints
    from spade_tf.testing import torch_reference as reference

    import_torch()
    config = load_config(ROOT / "configs" / "ade20k.yaml")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 151, (1, 16, 16)).repeat(16, 1).repeat(16, 2).astype(np.int32)
    network = calibrate_batch_norm_(torch_generator(config),
                                    reference.semantic_one_hot(labels, 151))
    reference.save_state_dict(network, str(tmp_path / "G.pth"))
    folder = convert_reference_checkpoints(config, tmp_path / "ade20k",
                                           generator=tmp_path / "G.pth")
    loaded = load_for_inference(folder, "float32")
    semantic = build_semantic_input(config.model)(labels)
    expected = loaded.generator({"semantic": semantic}, training=False).numpy()
    assert np.mean(np.abs(expected) < 0.99) > 0.5  # an image, not a sign pattern
    outputs = {}
    for quantization in tflite.QUANTIZATIONS:
        raw = tflite.convert(loaded.generator, config.model, quantization, raw=True)
        _builtins_only(raw)
        outputs[quantization] = _interpreter(raw)(label_ids=labels)[sig.IMAGE]
    np.testing.assert_allclose(outputs["float32"], expected, atol=1e-4)
    float16 = np.abs(outputs["float16"] - expected) / 2  # in [0, 1] image units
    assert float16.mean() < 0.02 and (float16 > 0.02).mean() < 0.05, float16.mean()
    int8 = np.abs(outputs["int8"] - expected) / 2
    assert int8.mean() < 0.05, (int8.max(), int8.mean())


def test_the_command_keeps_litert_s_delegate_notice_off_stderr(tmp_path):
    """LiteRT's C++ runtime announces XNNPACK on stderr whatever TensorFlow's log level;
    spade-synthesize hides that line unless SPADE_TF_VERBOSE=1, as TensorFlow's."""
    from support.processes import run_command

    from spade_tf.config import Config, ModelConfig
    from spade_tf.model_dir import ModelDir, save_model_dir
    from spade_tf.models import build_generator

    config = Config(model=ModelConfig(num_classes=3, crop_size=32, base_filters=2,
                                      spade_hidden_filters=4))
    folder = save_model_dir(tmp_path / "model", ModelDir(config, build_generator(config.model)))
    path = tflite.export_tflite(folder, tmp_path, "tiny")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "map.png")
    args = ["--tflite", path, "--labels", tmp_path / "map.png", "--overwrite",
            "--out", tmp_path / "out.png"]
    quiet = run_command("spade-synthesize", *args)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    verbose = run_command("spade-synthesize", *args, SPADE_TF_VERBOSE="1")
    assert verbose.returncode == 0
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in verbose.stderr
