"""``spade-eval`` end to end through ``main(argv)`` on tiny data."""

import json

import keras
import numpy as np
import pytest
from support.processes import assert_one_line_error, run_command
from support.scores import independent_miou
from support.synthetic_data import make_synthetic_records

from spade_cli.evaluate import main
from spade_tf import inference_loader as folding
from spade_tf.config import Config, DataConfig, ModelConfig
from spade_tf.evaluation import (
    feature_statistics,
    frechet_distance,
    kernel_inception_distance,
    synthetic_miou,
)
from spade_tf.evaluation.generate import generate_images
from spade_tf.evaluation.images import read_image, read_label_map
from spade_tf.inference_rules import seeded_latent, to_uint8
from spade_tf.model_dir import ModelDir, save_model_dir
from spade_tf.models import build_encoder, build_generator, build_semantic_input
from spade_tf.precision import network_precision
from tfrecords_tools import synthetic

SIZE = 32
PLAIN = ModelConfig(num_classes=synthetic.NUM_CLASSES, crop_size=SIZE, base_filters=4,
                    spade_hidden_filters=8)
VAE = ModelConfig(num_classes=synthetic.NUM_CLASSES, use_instance_edges=True, crop_size=SIZE,
                  base_filters=4, spade_hidden_filters=8, use_vae=True, latent_dim=8,
                  encoder_filters=4, encoder_input_size=128)
DATA = DataConfig(preprocess="none", load_size=SIZE)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_records")
    scenes = synthetic.write_dataset(root / "scenes", 3, size=SIZE, seed=4)
    return scenes, make_synthetic_records(scenes, root / "records", num_shards=2)


def _model_dir(path, model: ModelConfig):
    keras.utils.set_random_seed(5)
    encoder = build_encoder(model) if model.use_vae else None
    return save_model_dir(path, ModelDir(Config(model=model, data=DATA), build_generator(model),
                                         encoder=encoder))


def _images(folder, names):
    return np.stack([read_image(folder / f"{name}.png") for name in names])


def test_generate_then_synthetic(records, tmp_path, capsys, monkeypatch):
    scenes, data = records
    model_dir = _model_dir(tmp_path / "model", PLAIN)
    out = tmp_path / "eval"
    assert main(["generate", "--model-dir", str(model_dir), "--data", str(data), "--out",
                 str(out), "--batch-size", "2"]) == 0
    assert "wrote 3 images (32x32)" in capsys.readouterr().out
    names = sorted(p.stem for p in (out / "generated").iterdir())
    assert names == [f"scene_{i:05d}" for i in range(3)]
    labels = np.stack([read_label_map(out / "labels" / f"{n}.png") for n in names])
    np.testing.assert_array_equal(labels, np.stack(
        [read_label_map(scenes / "labels" / f"{n}.png") for n in names]))
    np.testing.assert_array_equal(_images(out / "real", names), _images(scenes / "images", names))
    # The generator on the same label maps, by the export's uint8 rule (batching may move
    # a value across a rounding boundary, hence 1 grey level).
    generator = keras.saving.load_model(model_dir / "generator.keras", compile=False)
    expected = to_uint8(generator({"semantic": build_semantic_input(PLAIN)(labels)},
                                  training=False))
    generated = _images(out / "generated", names)
    assert np.abs(generated.astype(int) - expected).max() <= 1
    # The in-process precision switch (its accuracy is tested in test_precision.py on a
    # generator with calibrated statistics; this untrained one saturates).
    computed_in, original_load = [], folding.load_for_inference

    def load_recording(*args, **kwargs):
        loaded = original_load(*args, **kwargs)
        computed_in.append(network_precision(loaded.generator))
        return loaded

    monkeypatch.setattr(folding, "load_for_inference", load_recording)
    assert main(["generate", "--model-dir", str(model_dir), "--data", str(data), "--out",
                 str(tmp_path / "eval_bf16"), "--precision", "bfloat16"]) == 0
    assert computed_in == ["bfloat16"]
    assert len(list((tmp_path / "eval_bf16" / "generated").iterdir())) == 3

    report = tmp_path / "synthetic.json"
    assert main(["synthetic", "--generated", str(out / "generated"), "--labels",
                 str(out / "labels"), "--json", str(report)]) == 0
    values = json.loads(report.read_text())
    assert values["command"] == "synthetic" and values["num_images"] == 3
    assert values["mean_iou"] == pytest.approx(synthetic_miou(generated, labels), rel=1e-12)
    assert main(["synthetic", "--generated", str(out / "real"), "--labels",
                 str(out / "labels"), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["mean_iou"] == 1.0  # real scenes read back exactly

    assert main(["generate", "--model-dir", str(model_dir), "--data", str(data), "--out",
                 str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err


def test_generate_vae_latents_from_the_photo_and_seeded(records, tmp_path):
    scenes, data = records
    model_dir = _model_dir(tmp_path / "vae", VAE)
    first = generate_images(model_dir, data, tmp_path / "a", limit=2, seed=3)
    again = generate_images(model_dir, data, tmp_path / "b", limit=2, seed=3)
    generate_images(model_dir, data, tmp_path / "c", limit=2, seed=4, latent="random")
    assert first.names == again.names and first.num_images == 2
    names = first.names
    np.testing.assert_array_equal(_images(tmp_path / "a" / "generated", names),
                                  _images(tmp_path / "b" / "generated", names))
    assert not np.array_equal(_images(tmp_path / "a" / "generated", names),
                              _images(tmp_path / "c" / "generated", names))
    # By hand, in one batch of 2 as generate ran it (random weights saturate the output, so
    # another batch size may flip the odd pixel), by spade_tf.inference_rules's rule: latent i is
    # the encoder's mean of photo i; with latent="random" it is style seed 4 + i.
    encoder = keras.saving.load_model(model_dir / "encoder.keras", compile=False)
    generator = keras.saving.load_model(model_dir / "generator.keras", compile=False)
    photos = _images(tmp_path / "a" / "real", names)
    encoded = encoder(photos.astype(np.float32) / 127.5 - 1.0, training=False)
    labels = np.stack([read_label_map(tmp_path / "a" / "labels" / f"{n}.png") for n in names])
    instances = np.stack([read_label_map(scenes / "instances" / f"{n}.png") for n in names])
    semantic = build_semantic_input(VAE)(labels, instances)
    expected = to_uint8(generator({"semantic": semantic, "latent": encoded["mean"]},
                                  training=False))
    generated = _images(tmp_path / "a" / "generated", names)
    assert np.abs(generated.astype(int) - expected).max() <= 1
    seeded = to_uint8(generator({"semantic": semantic, "latent": seeded_latent([4, 5], 8)},
                                training=False))
    generated_random = _images(tmp_path / "c" / "generated", names)
    assert np.abs(generated_random.astype(int) - seeded).max() <= 1
    assert np.mean(np.asarray(seeded) != generated) > 0.01  # the style changes the image


def test_fid_with_the_torchscript_detector(tmp_path, torchscript_detector, detector_features,
                                           write_pngs, capsys):
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    generated = np.clip(real[:5].astype(int) // 2 + rng.integers(0, 60, (5, 16, 16, 3)),
                        0, 255).astype(np.uint8)
    write_pngs(tmp_path / "real", {f"r{i}": image for i, image in enumerate(real)})
    write_pngs(tmp_path / "gen", {f"g{i}": image for i, image in enumerate(generated)})
    report = tmp_path / "out" / "fid.json"
    assert main(["fid", "--real", str(tmp_path / "real"), "--generated", str(tmp_path / "gen"),
                 "--inception", str(torchscript_detector), "--batch-size", "4",
                 "--kid-subsets", "10", "--kid-subset-size", "4", "--json", str(report)]) == 0
    values = json.loads(report.read_text())
    real_features, generated_features = detector_features(real), detector_features(generated)
    expected_fid = frechet_distance(*feature_statistics(real_features),
                                    *feature_statistics(generated_features))
    expected_kid = kernel_inception_distance(real_features, generated_features, 10, 4, seed=0)
    assert values["fid"] == pytest.approx(expected_fid, rel=1e-9) and expected_fid > 100
    assert values["kid_mean"] == pytest.approx(expected_kid.mean, rel=1e-9)
    assert values["kid_std"] == pytest.approx(expected_kid.std, rel=1e-9)
    assert (values["num_real"], values["num_generated"], values["feature_dim"]) == (6, 5, 6)
    assert values["inception_kind"] == "torchscript"
    printed = capsys.readouterr().out
    assert f"FID  {expected_fid:.4f}" in printed and "compare runs at equal counts" in printed

    assert main(["fid", "--real", str(tmp_path / "real"), "--generated", str(tmp_path / "gen"),
                 "--inception", str(tmp_path / "missing.pt")]) == 2
    assert "spade-eval fid: error: the Inception file" in capsys.readouterr().err


def test_segmentation_command(tmp_path, segmenters, palette, write_pngs, capsys):
    rng = np.random.default_rng(1)
    classes = np.kron(rng.integers(0, 4, (3, 4, 4)), np.ones((2, 2), np.int64))
    labels = np.where(rng.random(classes.shape) < 0.3, (classes + 1) % 4, classes)
    labels[:, 0, :] = 99  # an id the mapping leaves out: ignored
    write_pngs(tmp_path / "gen", {f"x{i}": palette[c] for i, c in enumerate(classes)})
    # Stored as ids 10..13, which the mapping turns into the segmenter's 0..3.
    write_pngs(tmp_path / "lab", {f"x{i}": np.where(m == 99, 99, m + 10).astype(np.uint8)
                                  for i, m in enumerate(labels)})
    (tmp_path / "mapping.json").write_text(json.dumps({"10": 0, "11": 1, "12": 2, "13": 3}))
    report = tmp_path / "seg.json"
    assert main(["segmentation", "--generated", str(tmp_path / "gen"), "--labels",
                 str(tmp_path / "lab"), "--segmenter", str(segmenters["ids"]),
                 "--num-classes", "4", "--label-mapping", str(tmp_path / "mapping.json"),
                 "--json", str(report)]) == 0
    values = json.loads(report.read_text())
    valid = labels != 99
    assert values["pixel_accuracy"] == pytest.approx(
        float(np.mean(classes[valid] == labels[valid])), rel=1e-12)
    assert values["mean_iou"] == pytest.approx(
        independent_miou(classes[valid], labels[valid], 4), rel=1e-12)
    assert "mIoU" in capsys.readouterr().out

    assert main(["segmentation", "--generated", str(tmp_path / "gen"), "--labels",
                 str(tmp_path / "lab"), "--segmenter", str(tmp_path / "nothing")]) == 2
    assert "not a SavedModel folder" in capsys.readouterr().err


def test_kid_over_sets_of_the_subset_size_is_one_value_without_spread(
        tmp_path, torchscript_detector, detector_features, write_pngs):
    # The case: 8 real and 8 generated images, so every subset of 8 is all of them.
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    write_pngs(tmp_path / "real", {f"r{i}": image for i, image in enumerate(real)})
    write_pngs(tmp_path / "gen", {f"g{i}": image for i, image in enumerate(generated)})
    folders = ("--real", tmp_path / "real", "--generated", tmp_path / "gen",
               "--inception", torchscript_detector)
    result = run_command("spade-eval", "fid", *folders, "--json", tmp_path / "fid.json")
    assert result.returncode == 0, result.stderr[-3000:]
    kid = kernel_inception_distance(detector_features(real), detector_features(generated))
    assert f"KID  {kid.mean:.6f}  (1 subset of 8: both folders hold 8 images, so every " \
           "subset is all of them and there is no spread; more images give one)\n" \
        in result.stdout
    assert "±" not in result.stdout
    values = json.loads((tmp_path / "fid.json").read_text())
    assert (values["kid_std"], values["kid_num_subsets"], values["kid_subset_size"]) == \
        (None, 1, 8)

    # Subsets smaller than the sets keep the spread; a subset of 1 is refused up front.
    result = run_command("spade-eval", "fid", *folders, "--kid-subset-size", 4,
                         "--kid-subsets", 10)
    assert result.returncode == 0 and "± " in result.stdout and "(10 subsets of 4)" \
        in result.stdout, result.stdout + result.stderr[-2000:]
    result = run_command("spade-eval", "fid", *folders, "--kid-subset-size", 1)
    assert_one_line_error(result, "spade-eval fid", "--kid-subset-size 1: expected at least 2")
    assert "spade-eval: real" not in result.stderr  # refused before reading any image
