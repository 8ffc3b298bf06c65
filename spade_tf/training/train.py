"""Training GauGAN with ``model.fit``: strategy, checkpoints, resume, logs.

``train(config, data_dir, model_dir)`` builds the networks under a ``tf.distribute``
strategy, feeds them with ``strategy.distribute_datasets_from_function``, and writes
into ``model_dir``:

- ``config.yaml``: the resolved configuration (a resumed run must have the same model
  section);
- ``checkpoints/``: generator, discriminator, encoder, both optimizers, the epoch and the
  step, every ``train.checkpoint_every_steps`` steps and at each epoch's end. TensorFlow
  writes a checkpoint's files first and points the ``checkpoint`` index at it last, so
  an interrupted save never replaces the previous good checkpoint;
- ``logs/``: TensorBoard scalars (every loss term, learning rates) and image grids
  (label | generated | real);
- ``generator.keras`` (and ``discriminator.keras``, ``encoder.keras``) with ``config.yaml``:
  the model folder that ``spade-export`` reads, refreshed at each epoch's end.

A run started again with the same ``model_dir`` resumes from the latest checkpoint at
the same step, optimizer state and data position. A model folder written by
``spade-convert-torch`` (no checkpoints yet) is used as the starting weights.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from spade_tf.config import STRATEGIES, Config, ConfigError
from spade_tf.data.pipeline import explain_data_errors, make_input_fn
from spade_tf.errors import SpadeError
from spade_tf.inference import to_uint8
from spade_tf.model_dir import CONFIG_FILE, ModelDir, load_model_dir, write_model_dir
from spade_tf.models import (
    build_discriminator,
    build_encoder,
    build_generator,
    build_semantic_input,
)
from spade_tf.training.gaugan import GauGAN, default_optimizer

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"


class TrainingError(SpadeError, RuntimeError):
    """Training cannot start or cannot go on; the message says why."""


class LossBecameNaN(TrainingError):
    """A loss term became NaN or infinite."""

    exit_status = 3
    label = "stopped"


# -- strategy -------------------------------------------------------------------------


def split_cpu(replicas: int) -> None:
    """Make ``replicas`` logical CPU devices (before TensorFlow initializes devices)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError as error:
        raise TrainingError(f"cannot split the CPU into {replicas} devices once TensorFlow "
                            f"has started ({error}); do it first thing in the process.") from None


def choose_strategy(name: str = "auto", cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """``auto``: MultiWorker when TF_CONFIG names a cluster, Mirrored over several GPUs
    (or over ``cpu_replicas`` logical CPUs), else the default (one device)."""
    if name not in STRATEGIES:
        raise TrainingError(f"strategy {name!r} is unknown: expected one of {list(STRATEGIES)}.")
    if name == "multi_worker" or (name == "auto" and _tf_config_cluster()):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if cpu_replicas > 1:
        split_cpu(cpu_replicas)
        devices = [f"/cpu:{i}" for i in range(cpu_replicas)]
        return tf.distribute.MirroredStrategy(devices)
    gpus = tf.config.list_physical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _tf_config_cluster() -> bool:
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return len(tf_config.get("cluster", {}).get("worker", [])) > 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the shared outputs (checkpoints, logs, models)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker" and resolver.task_id == 0)


# -- building -------------------------------------------------------------------------


def build_trainer(config: Config, vgg_features: Callable | None = None) -> GauGAN:
    """GauGAN with its networks and optimizers, under the current strategy scope."""
    model = config.model
    train = config.train
    if train.vgg_weight > 0 and vgg_features is None:
        from spade_tf.training.vgg import load_vgg_features

        vgg_features = load_vgg_features(train.vgg_weights_path)
    trainer = GauGAN(
        generator=build_generator(model),
        discriminator=build_discriminator(model),
        encoder=build_encoder(model) if model.use_vae else None,
        semantic_input=build_semantic_input(model),
        vgg_features=vgg_features,
        gan_mode=train.gan_mode,
        feature_matching_weight=train.feature_matching_weight,
        vgg_weight=train.vgg_weight,
        kl_weight=train.kl_weight,
    )
    trainer.compile(
        g_optimizer=default_optimizer(train.g_learning_rate, train.beta_1, train.beta_2),
        d_optimizer=default_optimizer(train.d_learning_rate, train.beta_1, train.beta_2),
        jit_compile=train.jit_compile,
    )
    return trainer


def _optimizer_variables_owner(optimizer):
    return optimizer.inner_optimizer if isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer) else optimizer


def global_step(trainer: GauGAN) -> int:
    """Generator updates so far (one per batch)."""
    return int(_optimizer_variables_owner(trainer.g_optimizer).iterations.numpy())


# -- callbacks ------------------------------------------------------------------------


class LinearDecay(keras.callbacks.Callback):
    """The reference's schedule: constant, then linear towards 0 over the last epochs.

    In epoch ``i`` (0-based) of ``epochs``, the rates are multiplied by
    ``1 - max(0, i - (epochs - decay_epochs)) / decay_epochs``.
    """

    def __init__(self, epochs: int, decay_epochs: int, g_rate: float, d_rate: float):
        super().__init__()
        self.epochs, self.decay_epochs = epochs, decay_epochs
        self.rates = (g_rate, d_rate)

    def factor(self, epoch: int) -> float:
        if self.decay_epochs <= 0:
            return 1.0
        return 1.0 - max(0, epoch - (self.epochs - self.decay_epochs)) / self.decay_epochs

    def on_epoch_begin(self, epoch, logs=None):
        factor = self.factor(epoch)
        for optimizer, rate in zip((self.model.g_optimizer, self.model.d_optimizer),
                                   self.rates, strict=True):
            optimizer.learning_rate = rate * factor

    def on_epoch_end(self, epoch, logs=None):
        # Logged by the TensorBoard callback that runs after this one.
        if logs is not None:
            logs["g_learning_rate"] = float(self.model.g_optimizer.learning_rate.numpy())
            logs["d_learning_rate"] = float(self.model.d_optimizer.learning_rate.numpy())


class StopOnNaN(keras.callbacks.Callback):
    """Stops training with an error naming the loss term that became NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if not math.isfinite(float(value)):
                self.model.stop_training = True
                raise LossBecameNaN(
                    f"loss {name} became {float(value)} at step {global_step(self.model)}: "
                    "training stopped (the last checkpoint is intact). Lower the learning "
                    "rates, check the data, or try train.mixed_precision=float32."
                )


class Checkpointer(keras.callbacks.Callback):
    """Saves the training state every N steps and at each epoch's end."""

    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable,
                 every_steps: int, steps_per_epoch: int):
        super().__init__()
        self.manager, self.epoch = manager, epoch
        self.every_steps, self.steps_per_epoch = every_steps, steps_per_epoch
        self.last_saved = -1

    def _save(self) -> None:
        step = global_step(self.model)
        if step == self.last_saved:
            return
        self.epoch.assign(step // self.steps_per_epoch)
        self.manager.save(checkpoint_number=step)
        self.last_saved = step

    def on_train_batch_end(self, batch, logs=None):
        if global_step(self.model) % self.every_steps == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        self._save()


class ModelFolderWriter(keras.callbacks.Callback):
    """Refreshes the ``.keras`` networks in the model folder at each epoch's end."""

    def __init__(self, model_dir: Path, config: Config):
        super().__init__()
        self.model_dir, self.config = model_dir, config

    def on_epoch_end(self, epoch, logs=None):
        write_networks(self.model_dir, self.config, self.model)


class ImageGrids(keras.callbacks.Callback):
    """TensorBoard images of label | generated | real for a fixed batch, per epoch."""

    def __init__(self, log_dir: Path, batch: dict, num_classes: int, max_images: int = 4):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(log_dir / "images"))
        self.batch = {key: value[:max_images] for key, value in batch.items()}
        rng = np.random.default_rng(0)
        self.palette = tf.constant(rng.integers(0, 256, (max(num_classes, 256) + 1, 3)),
                                   tf.uint8)

    def grid(self) -> tf.Tensor:
        generated = self.model(self.batch, training=False)
        label = tf.gather(self.palette, tf.minimum(self.batch["label"],
                                                   self.palette.shape[0] - 1))
        return tf.concat([label, to_uint8(generated), to_uint8(self.batch["image"])], axis=2)

    def on_epoch_end(self, epoch, logs=None):
        # record_if: Keras's TensorBoard callback may have limited recording to its steps.
        with self.writer.as_default(), tf.summary.record_if(True):
            tf.summary.image("label_generated_real", self.grid(), step=global_step(self.model),
                             max_outputs=self.batch["label"].shape[0])
        self.writer.flush()


# -- the run --------------------------------------------------------------------------


def write_networks(model_dir: Path, config: Config, trainer: GauGAN) -> None:
    """Replace the ``.keras`` networks one file at a time (each via a rename)."""
    staging = model_dir / ".networks.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    write_model_dir(staging, ModelDir(config, trainer.generator, trainer.discriminator,
                                      trainer.encoder))
    for path in staging.iterdir():
        os.replace(path, model_dir / path.name)
    staging.rmdir()


def _check_resumable(model_dir: Path, config: Config) -> None:
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return
    from spade_tf.config import load_config

    previous = load_config(path)
    if previous.model != config.model:
        changed = [key for key in config.model.__dataclass_fields__
                   if getattr(previous.model, key) != getattr(config.model, key)]
        raise ConfigError(
            f"{model_dir} holds a model with different settings ({', '.join(changed)}): "
            "use another --model-dir, or the same model settings to resume."
        )


def _start_from_model_folder(model_dir: Path, trainer: GauGAN) -> bool:
    """Initial weights from .keras networks in the folder (e.g. a converted checkpoint)."""
    if not (model_dir / "generator.keras").is_file():
        return False
    loaded = load_model_dir(model_dir)
    for name in ("generator", "discriminator", "encoder"):
        source, target = getattr(loaded, name), getattr(trainer, name)
        if source is not None and target is not None:
            target.set_weights(source.get_weights())
    return True


def _checkpoint_directory(model_dir: Path, strategy, chief: bool) -> Path:
    if chief:
        return model_dir / CHECKPOINT_DIR
    # Every worker must save (the save is collective); only the chief's copy is kept.
    task_id = strategy.cluster_resolver.task_id
    return model_dir / f".worker-{task_id}-checkpoints"


def train(config: Config, data_dir: str | os.PathLike, model_dir: str | os.PathLike,
          strategy: tf.distribute.Strategy | None = None, vgg_features: Callable | None = None,
          verbose: int | str = "auto", extra_callbacks: list | None = None) -> dict:
    """Train (or resume) ``config`` on ``data_dir`` into ``model_dir``; returns a summary."""
    strategy = strategy or tf.distribute.get_strategy()
    model_dir = Path(model_dir)
    chief = is_chief(strategy)
    train_config = config.train
    _check_resumable(model_dir, config)
    keras.mixed_precision.set_global_policy(train_config.mixed_precision)
    if chief:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / CONFIG_FILE).write_text(config.to_yaml())

    epochs = train_config.epochs
    probe = make_input_fn(data_dir, config.model, config.data, train_config.batch_size)
    steps_per_epoch = probe.steps_per_epoch

    with strategy.scope():
        trainer = build_trainer(config, vgg_features)
        epoch_variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = tf.train.Checkpoint(
            generator=trainer.generator, discriminator=trainer.discriminator,
            g_optimizer=trainer.g_optimizer, d_optimizer=trainer.d_optimizer,
            epoch=epoch_variable,
            **({"encoder": trainer.encoder} if trainer.encoder is not None else {}))
    # Every worker restores the chief's latest checkpoint; each saves into its own folder
    # (saving is collective across workers) and only the chief's is kept.
    latest = tf.train.latest_checkpoint(str(model_dir / CHECKPOINT_DIR))
    if latest is not None:
        checkpoint.restore(latest).assert_existing_objects_matched()
    else:
        _start_from_model_folder(model_dir, trainer)
    manager = tf.train.CheckpointManager(
        checkpoint, str(_checkpoint_directory(model_dir, strategy, chief)), max_to_keep=3)

    step = global_step(trainer)
    start_epoch, done_in_epoch = divmod(step, steps_per_epoch)
    summary = {"start_step": step, "steps_per_epoch": steps_per_epoch}
    if start_epoch >= epochs:
        summary.update(final_step=step, epochs=epochs)
        return summary

    callbacks = [
        StopOnNaN(),
        LinearDecay(epochs, train_config.decay_epochs, train_config.g_learning_rate,
                    train_config.d_learning_rate),
        Checkpointer(manager, epoch_variable, train_config.checkpoint_every_steps,
                     steps_per_epoch),
        *(extra_callbacks or []),
    ]
    if chief:
        sample = next(iter(probe(None)))
        callbacks += [
            keras.callbacks.TensorBoard(str(model_dir / LOG_DIR), update_freq="epoch",
                                        write_graph=False),
            ImageGrids(model_dir / LOG_DIR, sample, config.model.num_classes),
            ModelFolderWriter(model_dir, config),
        ]

    def fit(first_epoch: int, last_epoch: int, skip_steps: int, steps: int):
        input_fn = make_input_fn(data_dir, config.model, config.data, train_config.batch_size,
                                 seed=train_config.seed, start_epoch=first_epoch,
                                 num_epochs=last_epoch - first_epoch, skip_steps=skip_steps)
        dataset = strategy.distribute_datasets_from_function(input_fn)
        with explain_data_errors(input_fn.files):
            return trainer.fit(dataset, initial_epoch=first_epoch, epochs=last_epoch,
                               steps_per_epoch=steps, callbacks=callbacks, verbose=verbose,
                               shuffle=False)

    histories = []
    if done_in_epoch:  # finish the interrupted epoch at its data position first
        histories.append(fit(start_epoch, start_epoch + 1, done_in_epoch,
                             steps_per_epoch - done_in_epoch))
        start_epoch += 1
    if start_epoch < epochs:
        histories.append(fit(start_epoch, epochs, 0, steps_per_epoch))
    if not chief:
        shutil.rmtree(_checkpoint_directory(model_dir, strategy, chief), ignore_errors=True)
    summary.update(final_step=global_step(trainer), epochs=epochs,
                   history={key: value for history in histories
                            for key, value in history.history.items()})
    summary["trainer"] = trainer
    return summary
