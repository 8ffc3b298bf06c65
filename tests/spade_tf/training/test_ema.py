"""The generator average (train.ema_*): its recurrence on hand-computed numbers, the batch
norm re-estimation, a run that averages (conftest's averaged_run, checked step by step
against its recorded weights), the model folder it leaves and the commands that use it.
Exact resume after a kill: test_train.py; 1 vs 2 replicas: test_equivalence.py."""

import dataclasses
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from support.training_runs import averaged_config

from spade_cli.evaluate import main as evaluate_main
from spade_cli.export import main as export_main
from spade_cli.synthesize import main as synthesize_main
from spade_tf import export as export_module
from spade_tf import inference_loader, layout
from spade_tf import signatures as sig
from spade_tf.config import Config, ConfigError, ModelConfig
from spade_tf.errors import SpadeError
from spade_tf.inference_loader import load_for_inference
from spade_tf.layers import SpectralNormalization
from spade_tf.model_dir import ModelDirError, choose_weights, load_model_dir
from spade_tf.models import build_generator, build_semantic_input
from spade_tf.training import train
from spade_tf.training.ema import (
    GeneratorAverage,
    batch_norm_layers,
    batch_norm_statistics,
    reestimate_batch_norm,
    reestimation_step,
)

# -- the recurrence and the batch norm, on their own ------------------------------------


def _dense_net(spectral: bool) -> keras.Model:
    dense = keras.layers.Dense(2, name="dense")
    # The same names in both: the average pairs its weights with the source's by path.
    return keras.Sequential([keras.Input((3,)),
                             SpectralNormalization(dense, name="dense") if spectral else dense],
                            name="net")


def test_the_recurrence_on_hand_computed_numbers():
    source, averaged = _dense_net(spectral=False), _dense_net(spectral=False)
    average = GeneratorAverage({"generator": source}, decay=0.75, start_step=2,
                               averaged={"generator": averaged})
    kernel, bias = averaged.get_layer("dense").kernel, averaged.get_layer("dense").bias
    # Updates 1 and 2 (up to start_step) copy; then average = 0.75 average + 0.25 weights:
    # 0.75 * 8 + 0.25 * 16 = 10, then 0.75 * 10 + 0.25 * 0 = 7.5.
    for value, want in [(4.0, 4.0), (8.0, 8.0), (16.0, 10.0), (0.0, 7.5)]:
        for variable in source.weights:
            variable.assign(np.full(variable.shape, value, np.float32))
        average.update()
        np.testing.assert_array_equal(kernel.numpy(), np.full((3, 2), want, np.float32))
        np.testing.assert_array_equal(bias.numpy(), np.full(2, want, np.float32))
    assert int(average.updates.numpy()) == 4
    average.reset(7)  # a run that starts averaging later: the weights now, at its step
    np.testing.assert_array_equal(kernel.numpy(), np.zeros((3, 2), np.float32))
    assert int(average.updates.numpy()) == 7


def test_a_spectral_normalized_kernel_is_averaged_as_the_network_computes_it():
    source = _dense_net(spectral=True)
    average = GeneratorAverage({"generator": source}, decay=0.5, start_step=0,
                               averaged={"generator": _dense_net(spectral=False)})
    wrapper = source.get_layer("dense")
    folded = [wrapper.normalized_kernel(training=False).numpy()]  # copied when built
    wrapper.layer.kernel.assign(np.random.default_rng(0).normal(size=(3, 2)).astype("float32"))
    folded.append(wrapper.normalized_kernel(training=False).numpy())
    average.update()  # start_step 0: the first update averages already (OASIS's way)
    # In the update's own arithmetic, average + (1 - decay) * (weights - average): the
    # mean's terms nearly cancel in places, where 0.5 * a + 0.5 * b rounds differently
    # by more than rtol (once 3e-8 on 0.003).
    np.testing.assert_allclose(average.networks["generator"].get_layer("dense").kernel.numpy(),
                               folded[0] + np.float32(0.5) * (folded[1] - folded[0]), rtol=1e-6)


def test_batch_norm_reestimation_is_imaginaires_cumulative_average():
    """Ours (momentum 1 per batch, then the mean of the batches' statistics) against
    imaginaire's procedure: statistics reset, then batch k at momentum 1 / (k + 1)."""
    model = ModelConfig(num_classes=4, crop_size=32, base_filters=4, spade_hidden_filters=8,
                        use_spectral_norm=False)
    ours, theirs = build_generator(model), build_generator(model)
    theirs.set_weights(ours.get_weights())
    semantic = build_semantic_input(model)
    rng = np.random.default_rng(2)
    batches = [{"label": rng.integers(0, 4, (3, 32, 32)).astype(np.int32)} for _ in range(2)]
    step = reestimation_step(ours, lambda batch: {"semantic": semantic(batch["label"])})
    assert reestimate_batch_norm(ours, batches, step) == 2
    assert all(layer.momentum == 0.1 and layer.trainable for layer in batch_norm_layers(ours))

    layers = batch_norm_layers(theirs)
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    for index, batch in enumerate(batches):
        for layer in layers:
            layer.momentum = 1.0 / (index + 1)
        theirs({"semantic": semantic(batch["label"])}, training=True)
    assert len(layers) > 10
    for want, got in zip(batch_norm_statistics(theirs), batch_norm_statistics(ours),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# -- a run that averages (tests/spade_tf/training/conftest.py) ---------------------------


def _weights(network) -> dict:
    return {variable.path: variable.numpy() for variable in network.weights}


def test_the_average_follows_the_recurrence_of_the_recorded_weights(averaged_run):
    raw, averaged = averaged_run["recorder"].raw, averaged_run["recorder"].averaged
    assert len(raw) == 6 and set(raw[0]) == set(averaged[0])
    expected = None
    for update, (weights, got) in enumerate(zip(raw, averaged, strict=True), start=1):
        expected = weights if update <= 2 else {  # train.ema_start_step=2, ema_decay=0.5
            path: 0.5 * expected[path] + 0.5 * weights[path] for path in weights}
        for path, value in expected.items():
            np.testing.assert_allclose(got[path], value, rtol=1e-5, atol=1e-7,
                                       err_msg=f"update {update}: {path}")
    # The weights moved, and the average is not just the last of them.
    kernel = "head_0/conv_0/kernel"
    assert np.abs(raw[5][kernel] - raw[0][kernel]).max() > 1e-4
    assert np.abs(averaged[5][kernel] - raw[5][kernel]).max() > 1e-5
    average = averaged_run["trainer"].average
    assert int(average.updates.numpy()) == 6
    for path, value in _weights(average.networks["generator"]).items():
        np.testing.assert_array_equal(value, averaged[5][path], err_msg=path)


def test_the_folder_holds_both_generators_with_the_averages_batch_norm_reestimated(
        averaged_run):
    folder = averaged_run["model_dir"]
    loaded = load_model_dir(folder, networks=("generator", "generator_ema"))
    written, kept = _weights(loaded.generator_ema), _weights(
        averaged_run["trainer"].average.networks["generator"])
    statistics = {path for path in kept if "/moving_" in path}
    assert statistics and set(written) == set(kept)
    for path in set(kept) - statistics:
        np.testing.assert_array_equal(written[path], kept[path], err_msg=path)
    # Re-estimated for the file; the average (and so its checkpoints) keeps its own.
    assert max(np.abs(written[path] - kept[path]).max() for path in statistics) > 1e-3
    assert (folder / "samples" / "epoch_002.png").is_file()

    # Inference takes the average where the folder has one; the trained one on request.
    assert choose_weights(folder) == "ema" and choose_weights(folder, "raw") == "raw"


def test_the_export_serves_the_average_and_says_so(averaged_run, tmp_path):
    folder, base = averaged_run["model_dir"], tmp_path / "exports"
    assert export_main(["--model-dir", str(folder), "--export-base", str(base),
                        "--no-warmup"]) == 0
    version = base / "spade" / "1"
    assert json.loads((version / layout.SPADE_METADATA_FILE).read_text())["weights"] == "ema"
    labels = np.random.default_rng(3).integers(0, 8, (1, 64, 64)).astype(np.int32)
    instances = np.zeros_like(labels)
    served = tf.saved_model.load(str(version)).signatures[sig.DEFAULT_SIGNATURE](
        label_ids=tf.constant(labels), instance_ids=tf.constant(instances))["image"].numpy()
    ema = load_for_inference(folder)
    model = ema.config.model
    image = ema.generator({"semantic": build_semantic_input(model)(labels, instances)},
                          training=False).numpy()
    np.testing.assert_array_equal(served, np.clip(np.round((image + 1) * 127.5), 0, 255))


class _Loaded(SpadeError):
    """What the stand-in loader raises, with the arguments it was given."""


def test_every_command_passes_weights_to_the_one_loader(monkeypatch, tmp_path, capsys):
    def loader(model_dir, precision=None, checkpoint=None, weights=None):
        raise _Loaded(f"weights={weights}")

    monkeypatch.setattr(inference_loader, "load_for_inference", loader)
    monkeypatch.setattr(export_module, "load_for_inference", loader)
    labels = tmp_path / "map.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(labels)
    commands = [
        (export_main, ["--model-dir", "m", "--export-base", str(tmp_path / "e")]),
        (synthesize_main, ["--model-dir", "m", "--labels", str(labels), "--out",
                           str(tmp_path / "out.png")]),
        (evaluate_main, ["generate", "--model-dir", "m", "--data", "d", "--out",
                         str(tmp_path / "gen")]),
    ]
    for main, args in commands:
        for weights in (None, "raw", "ema"):
            extra = [] if weights is None else ["--weights", weights]
            assert main([*args, *extra]) == 2
            assert f"weights={weights}" in capsys.readouterr().err, (main, weights)
    assert synthesize_main(["--export", "x", "--weights", "raw", "--labels", str(labels),
                            "--out", str(tmp_path / "out.png")]) == 2
    assert "--weights picks a model folder's generator" in capsys.readouterr().err


def test_weights_ema_of_a_folder_that_never_averaged_says_what_to_use(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.yaml").write_text(Config(model=ModelConfig(num_classes=3)).to_yaml())
    assert choose_weights(folder) == "raw"
    with pytest.raises(ModelDirError, match="holds no averaged generator "
                                            r"\(generator_ema.keras\): it was trained with "
                                            "train.ema_decay=0 .* Use --weights raw"):
        load_for_inference(folder, weights="ema")


def test_a_lost_averaged_generator_is_written_again_as_training_wrote_it(averaged_run,
                                                                          tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(averaged_run["model_dir"], folder)
    before = _weights(load_model_dir(folder, networks=("generator_ema",)).generator_ema)
    (folder / "generator_ema.keras").unlink()
    summary = train(averaged_config(), averaged_run["records"], folder, verbose=0)
    assert summary["finished"] and summary["rewritten"] == {"generator_ema.keras": "missing"}
    after = _weights(load_model_dir(folder, networks=("generator_ema",)).generator_ema)
    for path, value in before.items():  # batch norm re-estimated over the same batches
        np.testing.assert_allclose(after[path], value, rtol=1e-5, atol=1e-6, err_msg=path)


def test_turning_the_average_off_on_resume_is_refused(averaged_run):
    with pytest.raises(ConfigError, match="train.ema_decay=0 cannot resume .* --set "
                                          "train.ema_decay=0.5"):
        train(averaged_config("train.ema_decay=0", "train.epochs=3"), averaged_run["records"],
              averaged_run["model_dir"], verbose=0)


def test_the_options_are_checked():
    for key, value in [("ema_decay", 1.0), ("ema_decay", -0.1), ("ema_start_step", -1),
                       ("ema_bn_batches", -2)]:
        with pytest.raises(ConfigError, match=f"train.{key}="):
            dataclasses.replace(averaged_config().train, **{key: value})
