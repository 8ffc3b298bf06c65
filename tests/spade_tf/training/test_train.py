"""spade_tf.training.train: outputs, resume, crash safety, NaN, schedule, missing VGG weights
(the generator average: test_ema.py)."""

import contextlib
import os
import signal
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from support import ROOT
from support.processes import assert_one_line_error, run_commands
from support.runs import session_run
from support.synthetic_data import write_training_records
from support.training_runs import EMA_OVERRIDES, TRAIN_OVERRIDES

from spade_tf.config import ConfigError, load_config
from spade_tf.data import make_input_fn
from spade_tf.model_dir import ModelDirError, load_model_dir
from spade_tf.training import LossBecameNaN, TrainingError, build_trainer, train
from spade_tf.training.callbacks import LinearDecay, StopOnNaN
from spade_tf.training.strategy import check_batch_split
from spade_tf.training.vgg import VGGWeightsError, random_vgg_features

OVERRIDES = TRAIN_OVERRIDES


@pytest.fixture(scope="module")
def records(training_records):
    return training_records


def _config(*extra):
    return load_config(ROOT / "configs" / "demo.yaml", [*OVERRIDES, *extra])


@pytest.fixture(scope="module")
def _shared_vgg_trainer(records):
    config = _config("train.vgg_weight=10.0")
    trainer = build_trainer(config, vgg_features=random_vgg_features(seed=0))
    batch = next(iter(make_input_fn(records, config.model, config.data, 4)(None)))
    return trainer, batch


@pytest.fixture
def vgg_trainer(_shared_vgg_trainer):
    """A trainer with the VGG term on and a batch, shared so that its step is traced once
    (~15 s); its variables and its optimizers' are put back after each test."""
    trainer, batch = _shared_vgg_trainer
    variables = [*trainer.variables, *trainer.g_optimizer.variables,
                 *trainer.d_optimizer.variables]
    saved = [variable.numpy() for variable in variables]
    yield trainer, dict(batch)
    for variable, value in zip(variables, saved, strict=True):
        variable.assign(value)


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
    # A picture on disk too: 4 training examples, label map (in the synthetic classes'
    # colours) | generated | real, each scaled from 64 to 192 pixels.
    sample = np.asarray(Image.open(model_dir / "samples" / "epoch_001.png"))
    assert sample.shape == (4 * 192 + 3 * 4, 3 * 192 + 2 * 4, 3)
    label_colors = {tuple(c) for c in sample[:192:3, :192:3].reshape(-1, 3)}
    assert label_colors <= {tuple(c) for c in config.classes().palette}
    loaded = load_model_dir(model_dir)
    for name in ("generator", "discriminator"):
        for saved, trained in zip(getattr(loaded, name).weights,
                                  getattr(first["trainer"], name).weights, strict=True):
            np.testing.assert_array_equal(saved.numpy(), trained.numpy())

    # Resumed with the generator average on: it starts from the resumed weights.
    lines = []
    second = train(_config("train.epochs=2", *EMA_OVERRIDES), records, model_dir, verbose=0,
                   report=lines.append)
    assert second["start_step"] == 3 and second["final_step"] == 6
    assert "the checkpoint holds no generator average: averaging from step 3's weights" in lines
    assert int(second["trainer"].average.updates.numpy()) == 6
    assert (model_dir / "generator_ema.keras").is_file()
    # Done already: a third run does nothing.
    assert train(_config("train.epochs=2", *EMA_OVERRIDES), records, model_dir,
                 verbose=0)["final_step"] == 6
    # Another model in the same folder is refused.
    with pytest.raises(ConfigError, match="different settings \\(base_filters\\)"):
        train(_config("model.base_filters=4"), records, model_dir, verbose=0)
    # Its checkpoints hold no Adam first moments (beta_1 = 0): beta_1 = 0.5 is refused in
    # config terms, and nothing is written.
    saved_config = (model_dir / "config.yaml").read_text()
    with pytest.raises(TrainingError, match="holds no Adam first moments .* train.beta_1=0.5 "
                                            "needs them: resume with --set train.beta_1=0,"):
        train(_config("train.epochs=3", "train.beta_1=0.5", *EMA_OVERRIDES), records,
              model_dir, verbose=0)
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-6")
    assert (model_dir / "config.yaml").read_text() == saved_config


def test_resumed_data_position_matches_an_uninterrupted_stream(records):
    config = _config()
    full = make_input_fn(records, config.model, config.data, 4, num_epochs=2)(None)
    tail = make_input_fn(records, config.model, config.data, 4, start_epoch=1,
                         num_epochs=1, skip_steps=1)(None)
    full_labels = [batch["label"].numpy() for batch in full]
    tail_labels = [batch["label"].numpy() for batch in tail]
    assert len(full_labels) == 6 and len(tail_labels) == 2
    for want, got in zip(full_labels[4:], tail_labels, strict=True):
        np.testing.assert_array_equal(got, want)
    # Epochs differ from each other (reshuffled and re-augmented per epoch).
    assert not np.array_equal(full_labels[0], full_labels[3])


@session_run
def killed_training(folder, processes):
    """_config() with the generator average (conftest's averaged_run, uninterrupted) trained
    in a process SIGKILLed right after step 5: (its CompletedProcess, the records it read,
    its model folder)."""
    records = write_training_records(folder / "scenes", folder / "records")
    model_dir = folder / "run"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    result = processes.run(
        [sys.executable, str(ROOT / "tests" / "support" / "kill_during_training.py"), str(records),
         str(model_dir), "5"], timeout=300, env=env)
    return result, records, model_dir


def test_sigkill_mid_run_resumes_from_the_last_checkpoint(killed_training, averaged_run):
    result, records, model_dir = killed_training
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
            # Checkpoint keys of Adam's velocities (beta_1 = 0: no momentums stored) are
            # those they have in the layout with momentums: 3, 5, 7 ...
            resumed["slots"] = {
                f"g_optimizer/_variables/{3 + 2 * index}/.ATTRIBUTES/VARIABLE_VALUE":
                    velocity.numpy() for index, velocity in enumerate(optimizer._velocities)}

    summary = train(_config(*EMA_OVERRIDES), records, model_dir, verbose=0,
                    extra_callbacks=[CaptureState()])
    assert summary["start_step"] == 4 and resumed["step"] == 4
    assert summary["final_step"] == 6
    # Adam's moments came back exactly as saved (and are not all zero).
    assert len(resumed["slots"]) > 100
    assert any(np.abs(value).max() > 0 for value in resumed["slots"].values())
    for key, value in resumed["slots"].items():
        np.testing.assert_array_equal(value, saved.get_tensor(key))
    # The generator average continued exactly: as the same run's uninterrupted (step 5,
    # lost with the process, trained again from step 4's checkpoint).
    uninterrupted = averaged_run["trainer"]
    for network in ("generator", "discriminator"):
        for want, got in zip(getattr(uninterrupted, network).weights,
                             getattr(summary["trainer"], network).weights, strict=True):
            np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=want.path)
    for want, got in zip(uninterrupted.average.networks["generator"].weights,
                         summary["trainer"].average.networks["generator"].weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=want.path)
    assert int(summary["trainer"].average.updates.numpy()) == 6


def test_nan_loss_stops_with_its_name(vgg_trainer):
    trainer, batch = vgg_trainer
    batch["image"] = tf.fill(tf.shape(batch["image"]), np.nan)
    with pytest.raises(LossBecameNaN, match=r"loss (d_fake|d_real|d_total|g_\w+) became nan"):
        trainer.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0,
                    callbacks=[StopOnNaN()])


def test_linear_decay_follows_the_reference_schedule():
    decay = LinearDecay(epochs=10, decay_epochs=4, g_rate=1e-4, d_rate=4e-4)
    assert [decay.factor(e) for e in range(10)] == [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert LinearDecay(5, 0, 1, 1).factor(4) == 1
    # The optimizers' own rates follow at each epoch's start (and are logged at its end).
    trainer = build_trainer(_config("train.vgg_weight=0.0"))
    decay.set_model(trainer)
    rates = []
    for epoch in (0, 7, 9):
        decay.on_epoch_begin(epoch)
        logs = {}
        decay.on_epoch_end(epoch, logs)
        rates.append((logs["g_learning_rate"], logs["d_learning_rate"]))
    np.testing.assert_allclose(rates, [(1e-4, 4e-4), (0.75e-4, 3e-4), (0.25e-4, 1e-4)],
                               rtol=1e-6)


def test_vgg_term_without_weights_stops_before_step_one(records, tmp_path):
    with pytest.raises(VGGWeightsError, match="train.vgg_weights_path is not set"):
        train(_config("train.vgg_weight=10.0"), records, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_vgg_term_trains_with_a_feature_network(vgg_trainer):
    trainer, batch = vgg_trainer
    history = trainer.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    # The terms' values are checked by hand in test_losses.py; here the VGG term is on.
    assert history.history["g_vgg"][0] > 0


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


# -- issue 12: state kept across runs, precision, failures -----------------------------


def _open_files_under(folder) -> list[str]:
    """Files this process holds open inside ``folder`` (Linux's /proc)."""
    fds = "/proc/self/fd"
    paths = []
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):
            paths.append(os.readlink(f"{fds}/{fd}"))
    return [path for path in paths if path.startswith(str(folder))]


def test_mixed_float16_counts_skipped_steps_and_refuses_a_precision_change(records, tmp_path):
    model_dir = tmp_path / "run"
    mixed = ["train.mixed_precision=mixed_float16"]

    class OverflowFirstSteps(keras.callbacks.Callback):
        """A loss scale so large that the first steps' gradients overflow and are skipped."""

        def on_train_begin(self, logs=None):
            self.model.g_optimizer.dynamic_scale.assign(2.0 ** 40)

    keras.mixed_precision.set_global_policy("float32")
    summary = train(_config(*mixed), records, model_dir, verbose=0,
                    extra_callbacks=[OverflowFirstSteps()])
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    updates = int(summary["trainer"].g_optimizer.inner_optimizer.iterations.numpy())
    assert updates < 6, "no step was skipped: the test does not test anything"
    assert summary["final_step"] == 6  # every batch counted, skipped or not
    latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert latest.endswith("ckpt-6")
    assert tf.train.load_checkpoint(latest).get_tensor("batches/.ATTRIBUTES/VARIABLE_VALUE") == 6
    assert not _open_files_under(model_dir)  # the TensorBoard image writer is closed

    # The same command again: finished, nothing trained. And float32 cannot resume
    # loss-scaled checkpoints: said in config terms, up front. (Both at once: neither writes.)
    command = ("spade-train", "--config", ROOT / "configs" / "demo.yaml", "--data", records,
               "--model-dir", model_dir)
    again, changed = run_commands(
        (*command, *[arg for key in [*OVERRIDES, *mixed] for arg in ("--set", key)]),
        (*command, *[arg for key in OVERRIDES for arg in ("--set", key)],
         "--set", "train.epochs=3"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip() == (f"spade-train: {model_dir} is finished (step 6 of 6): "
                                    "nothing to do; raise train.epochs to train longer.")
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")) == latest
    assert_one_line_error(changed, "spade-train", "train.mixed_precision='float32'",
                          "train.mixed_precision='mixed_float16'",
                          "--set train.mixed_precision=mixed_float16", "a new --model-dir")
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")) == latest


def test_a_failed_start_restores_the_policy_and_leaves_no_files(records, tmp_path):
    model_dir = tmp_path / "run"

    class Crash(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise RuntimeError("crash before step one")

    keras.mixed_precision.set_global_policy("float32")
    with pytest.raises(RuntimeError, match="crash before step one"):
        train(_config("train.mixed_precision=mixed_bfloat16"), records, model_dir, verbose=0,
              extra_callbacks=[Crash()])
    assert keras.mixed_precision.global_policy().name == "float32"
    assert not model_dir.exists()
    assert not _open_files_under(model_dir)
    # A converted model folder (no checkpoints) keeps its files after a failed start.
    from spade_tf.model_dir import ModelDir, save_model_dir
    from spade_tf.models import build_generator

    config = _config()
    save_model_dir(model_dir, ModelDir(config, build_generator(config.model)))
    before = {path.name: path.read_bytes() for path in model_dir.iterdir()}
    with pytest.raises(RuntimeError, match="crash before step one"):
        train(_config("train.epochs=5"), records, model_dir, verbose=0,
              extra_callbacks=[Crash()])
    assert {path.name: path.read_bytes() for path in model_dir.iterdir()} == before
    # ... and another model is refused there, with the values that differ.
    with pytest.raises(ConfigError, match=r"model.base_filters=8 there, 4 here"):
        train(_config("model.base_filters=4"), records, model_dir, verbose=0)
    # A folder that holds something else is not trained into.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ModelDirError, match="is not empty \\(notes.txt\\) and holds no"):
        train(config, records, other, verbose=0)
    assert sorted(path.name for path in other.iterdir()) == ["notes.txt"]


def test_a_checkpoint_without_the_batch_counter_resumes_at_the_optimizer_step(records,
                                                                                tmp_path):
    """Checkpoints written before the counter existed count the generator's updates."""
    model_dir = tmp_path / "run"
    config = _config("train.epochs=1")
    trainer = build_trainer(config)
    trainer.g_optimizer.iterations.assign(2)  # as after two steps
    old_style = tf.train.Checkpoint(generator=trainer.generator,
                                    discriminator=trainer.discriminator,
                                    g_optimizer=trainer.g_optimizer,
                                    d_optimizer=trainer.d_optimizer,
                                    epoch=tf.Variable(0, dtype=tf.int64))
    tf.train.CheckpointManager(old_style, str(model_dir / "checkpoints"), 3).save(
        checkpoint_number=2)
    (model_dir / "config.yaml").write_text(config.to_yaml())
    summary = train(config, records, model_dir, verbose=0)
    assert summary["start_step"] == 2 and summary["final_step"] == 3
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-3")


def test_a_failed_worker_removes_its_checkpoint_copy(records, tmp_path, monkeypatch):
    train_module = sys.modules["spade_tf.training.train"]  # the package re-exports train()
    monkeypatch.setattr(train_module, "is_chief", lambda strategy: False)
    model_dir = tmp_path / "run"

    class CrashAfterASave(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            assert list(model_dir.glob(".worker-*-checkpoints/ckpt-1.index"))
            raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError, match="worker lost"):
        train(_config("train.checkpoint_every_steps=1"), records, model_dir, verbose=0,
              extra_callbacks=[CrashAfterASave()])
    assert not list(model_dir.glob(".worker-*")), list(model_dir.iterdir())


def test_a_batch_the_replicas_cannot_share_is_refused_with_counts_that_work():
    with pytest.raises(ConfigError) as error:
        check_batch_split(8, 3, "the 3 replicas of MirroredStrategy")
    assert str(error.value) == (
        "the 3 replicas of MirroredStrategy cannot share the global batch "
        "train.batch_size=8 evenly (every replica takes the same share): use 1, 2, 4 or 8 "
        "replicas, or a train.batch_size that 3 divides (6, 9, 12 ...).")
    check_batch_split(8, 4)
    check_batch_split(5, 1)


def test_gaugan_without_vgg_features_says_what_to_pass():
    from spade_tf.models import build_discriminator, build_generator, build_semantic_input
    from spade_tf.training import GauGAN

    model = _config().model
    with pytest.raises(VGGWeightsError) as error:
        GauGAN(build_generator(model), build_discriminator(model), build_semantic_input(model))
    message = str(error.value)
    assert "vgg_features=spade_tf.training.load_vgg_features(path)" in message
    assert "vgg_weight=0" in message and "--set" not in message
