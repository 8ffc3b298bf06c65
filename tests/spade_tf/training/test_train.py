"""spade_tf.training.train: outputs, resume, crash safety, NaN, schedule, missing VGG weights."""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from support import ROOT
from support.synthetic_data import make_synthetic_records

from spade_tf.config import ConfigError, load_config
from spade_tf.data import make_input_fn
from spade_tf.model_dir import load_model_dir
from spade_tf.training.train import LinearDecay, LossBecameNaN, StopOnNaN, build_trainer, train
from spade_tf.training.vgg import VGGWeightsError, random_vgg_features
from tfrecords_tools import synthetic

OVERRIDES = ["train.batch_size=4", "train.epochs=2", "train.checkpoint_every_steps=2"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = synthetic.write_dataset(tmp_path_factory.mktemp("scenes"), 12, size=64, seed=3)
    return make_synthetic_records(folder, tmp_path_factory.mktemp("records"), num_shards=2)


def _config(*extra):
    return load_config(ROOT / "configs" / "demo.yaml", [*OVERRIDES, *extra])


def test_train_writes_the_model_folder_resumes_and_refuses_another_model(records, tmp_path):
    model_dir = tmp_path / "run"
    config = _config("train.epochs=1")
    first = train(config, records, model_dir, verbose=0)
    assert first["steps_per_epoch"] == 3 and first["final_step"] == 3
    assert (model_dir / "config.yaml").is_file()
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-3")
    events = list((model_dir / "logs").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard logs"
    tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(
        str(path)) for value in event.summary.value}
    assert "label_generated_real" in tags and any("g_total" in tag for tag in tags)
    loaded = load_model_dir(model_dir)
    for name in ("generator", "discriminator"):
        for saved, trained in zip(getattr(loaded, name).weights,
                                  getattr(first["trainer"], name).weights, strict=True):
            np.testing.assert_array_equal(saved.numpy(), trained.numpy())

    second = train(_config("train.epochs=2"), records, model_dir, verbose=0)
    assert second["start_step"] == 3 and second["final_step"] == 6
    # Done already: a third run does nothing.
    assert train(_config("train.epochs=2"), records, model_dir, verbose=0)["final_step"] == 6
    # Another model in the same folder is refused.
    with pytest.raises(ConfigError, match="different settings \\(base_filters\\)"):
        train(_config("model.base_filters=4"), records, model_dir, verbose=0)


def test_resumed_data_position_matches_an_uninterrupted_stream(records):
    config = _config()
    full = make_input_fn(records, config.model, config.data, 4, num_epochs=2)(None)
    tail = make_input_fn(records, config.model, config.data, 4, start_epoch=1,
                         skip_steps=1)(None)
    full_labels = [batch["label"].numpy() for batch in full]
    tail_labels = [batch["label"].numpy() for batch in tail]
    assert len(full_labels) == 6 and len(tail_labels) == 2
    for want, got in zip(full_labels[4:], tail_labels, strict=True):
        np.testing.assert_array_equal(got, want)
    # Epochs differ from each other (reshuffled and re-augmented per epoch).
    assert not np.array_equal(full_labels[0], full_labels[3])


def test_sigkill_mid_run_resumes_from_the_last_checkpoint(records, tmp_path):
    model_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "kill_during_training.py"), str(records),
         str(model_dir), "5"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    checkpoint = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert checkpoint.endswith("ckpt-4")  # saved every 2 steps; killed after step 5
    saved = tf.train.load_checkpoint(checkpoint)

    # A checkpoint cut off while being written: files but no index entry. Ignored.
    (model_dir / "checkpoints" / "ckpt-6.index").write_bytes(b"partial")

    resumed = {}

    class CaptureState(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            optimizer = self.model.g_optimizer
            resumed["step"] = int(optimizer.iterations.numpy())
            # Checkpoint keys of the optimizer's variables (moments) follow their order.
            resumed["slots"] = {
                f"g_optimizer/_variables/{index}/.ATTRIBUTES/VARIABLE_VALUE": variable.numpy()
                for index, variable in enumerate(optimizer.variables) if index >= 2}

    summary = train(_config(), records, model_dir, verbose=0, extra_callbacks=[CaptureState()])
    assert summary["start_step"] == 4 and resumed["step"] == 4
    assert summary["final_step"] == 6
    # Adam's moments came back exactly as saved (and are not all zero).
    assert len(resumed["slots"]) > 100
    assert any(np.abs(value).max() > 0 for value in resumed["slots"].values())
    for key, value in resumed["slots"].items():
        np.testing.assert_array_equal(value, saved.get_tensor(key))


def test_nan_loss_stops_with_its_name(records):
    config = _config()
    trainer = build_trainer(config)
    batch = next(iter(make_input_fn(records, config.model, config.data, 4)(None)))
    batch["image"] = tf.fill(tf.shape(batch["image"]), np.nan)
    with pytest.raises(LossBecameNaN, match=r"loss (d_fake|d_real|d_total|g_\w+) became nan"):
        trainer.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0,
                    callbacks=[StopOnNaN()])


def test_linear_decay_follows_the_reference_schedule():
    decay = LinearDecay(epochs=10, decay_epochs=4, g_rate=1e-4, d_rate=4e-4)
    assert [decay.factor(e) for e in range(10)] == [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert LinearDecay(5, 0, 1, 1).factor(4) == 1


def test_vgg_term_without_weights_stops_before_step_one(records, tmp_path):
    with pytest.raises(VGGWeightsError, match="train.vgg_weights_path is not set"):
        train(_config("train.vgg_weight=10.0"), records, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_vgg_term_trains_with_a_feature_network(records):
    config = _config("train.vgg_weight=10.0")
    trainer = build_trainer(config, vgg_features=random_vgg_features(seed=0))
    batch = next(iter(make_input_fn(records, config.model, config.data, 4)(None)))
    history = trainer.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    assert history.history["g_vgg"][0] > 0
    np.testing.assert_allclose(
        history.history["g_total"][0],
        sum(history.history[k][0] for k in ("g_gan", "g_feature_matching", "g_vgg", "g_kl")),
        rtol=1e-5)


def test_a_model_folder_without_checkpoints_gives_the_starting_weights(records, tmp_path):
    from spade_tf.model_dir import ModelDir, save_model_dir
    from spade_tf.models import build_discriminator, build_generator

    config = _config("train.epochs=1")
    keras.utils.set_random_seed(99)
    start = ModelDir(config, build_generator(config.model), build_discriminator(config.model))
    save_model_dir(tmp_path / "converted", start)
    captured = {}

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            captured["generator"] = [w.numpy() for w in self.model.generator.weights]

    train(config, records, tmp_path / "converted", verbose=0, extra_callbacks=[Capture()])
    for got, want in zip(captured["generator"], start.generator.weights, strict=True):
        np.testing.assert_array_equal(got, want.numpy())
