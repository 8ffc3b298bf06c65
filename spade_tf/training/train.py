"""Training GauGAN with ``model.fit``: strategy, checkpoints, resume, logs.

``train(config, data_dir, model_dir)`` builds the networks under a ``tf.distribute``
strategy, feeds them with ``strategy.distribute_datasets_from_function``, and writes
into ``model_dir``:

- ``config.yaml``: the resolved configuration (a resumed run must have the same model
  section);
- ``checkpoints/``: generator, discriminator, encoder, both optimizers, the epoch and the
  step (batches trained), every ``train.checkpoint_every_steps`` steps, at each epoch's
  end and when SIGINT or SIGTERM stops training. TensorFlow writes a checkpoint's files
  first and points the ``checkpoint`` index at it last, so an interrupted save never
  replaces the previous good checkpoint;
- ``logs/``: TensorBoard scalars (every loss term, learning rates) and image grids
  (label | generated | real);
- ``generator.keras`` (and ``discriminator.keras``, ``encoder.keras``) with ``config.yaml``:
  the model folder that ``spade-export`` reads, refreshed at each epoch's end.

A run started again with the same ``model_dir`` resumes from the latest checkpoint at
the same step, optimizer state and data position. A model folder written by
``spade-convert-torch`` (no checkpoints yet) is used as the starting weights. Nothing is
written into ``model_dir`` before training really starts, and a run that fails before
its first checkpoint takes back what it wrote, so the corrected command can start
afresh. Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves a checkpoint and
raises :class:`~spade_tf.errors.Interrupted`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from spade_tf.config import STRATEGIES, Config, ConfigError
from spade_tf.data.manifest import DataError
from spade_tf.data.pipeline import explain_data_errors, make_input_fn
from spade_tf.errors import Interrupted, SpadeError, readable_tf_message
from spade_tf.inference import to_uint8
from spade_tf.model_dir import (
    CONFIG_FILE,
    NETWORK_FILES,
    ModelDir,
    ModelDirError,
    load_model_dir,
    write_model_dir,
)
from spade_tf.models import (
    build_discriminator,
    build_encoder,
    build_generator,
    build_semantic_input,
)
from spade_tf.synthesis import write_png_atomic
from spade_tf.training.gaugan import GauGAN
from spade_tf.training.optimizers import make_optimizer
from spade_tf.training.progress import EpochProgress
from spade_tf.training.recovery import rewrite_damaged_networks
from spade_tf.visualize import contact_sheet

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
SAMPLES_DIR = "samples"
# The batch counter's key in a checkpoint (checkpoints written before it existed lack it).
BATCHES_KEY = "batches/.ATTRIBUTES/VARIABLE_VALUE"
# What a failed start may leave in a model folder (older versions wrote config.yaml before
# checking the data): not a model yet.
START_LEFTOVERS = {CONFIG_FILE, LOG_DIR, SAMPLES_DIR, CHECKPOINT_DIR, ".networks.tmp"}


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


def _divisors(number: int) -> list[int]:
    return [d for d in range(1, number + 1) if number % d == 0]


def _spoken_list(values: list) -> str:
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def check_batch_split(batch_size: int, replicas: int, devices: str = "replicas") -> None:
    """Refuse a global batch that ``replicas`` devices cannot share evenly.

    ``devices`` names them in the user's terms (``"--cpu-replicas 3"``, ``"the 3 GPUs"``).
    """
    if replicas < 1 or batch_size % replicas == 0:
        return
    divisors = _divisors(batch_size)
    if len(divisors) > 6:  # the small ones and the batch itself say enough
        divisors = [*divisors[:5], batch_size]
    multiples = [replicas * k for k in range(max(1, batch_size // replicas),
                                             max(1, batch_size // replicas) + 3)]
    raise ConfigError(
        f"{devices} cannot share the global batch train.batch_size={batch_size} evenly "
        f"(every replica takes the same share): use {_spoken_list(divisors)} replicas, or a "
        f"train.batch_size that {replicas} divides ({', '.join(map(str, multiples))} ...)."
    )


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
        kl_reduction=train.kl_reduction,
    )
    trainer.compile(
        g_optimizer=make_optimizer(train.optimizer, train.g_learning_rate, train.beta_1,
                                   train.beta_2),
        d_optimizer=make_optimizer(train.optimizer, train.d_learning_rate, train.beta_1,
                                   train.beta_2),
        jit_compile=train.jit_compile,
    )
    return trainer


def _optimizer_variables_owner(optimizer):
    return optimizer.inner_optimizer if isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer) else optimizer


def global_step(trainer: GauGAN) -> int:
    """Generator updates so far: one per batch, except under ``mixed_float16``, whose loss
    scaler skips steps with overflowing gradients (``train`` counts batches itself)."""
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

    def __init__(self, step: Callable[[], int] | None = None):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if not math.isfinite(float(value)):
                self.model.stop_training = True
                step = self.step() if self.step else global_step(self.model)
                raise LossBecameNaN(
                    f"loss {name} became {float(value)} at step {step}: "
                    "training stopped (the last checkpoint is intact). Lower the learning "
                    "rates, check the data, or try train.mixed_precision=float32."
                )


class BatchCounter(keras.callbacks.Callback):
    """Counts the batches trained, in a variable the checkpoints hold.

    The optimizers' ``iterations`` cannot serve: under ``mixed_float16`` the loss scaler
    skips the update of a step whose gradients overflow, and that step does not count.
    """

    def __init__(self, batches: tf.Variable):
        super().__init__()
        self.batches = batches

    def on_train_batch_end(self, batch, logs=None):
        self.batches.assign_add(1)

    def value(self) -> int:
        return int(self.batches.numpy())


class Checkpointer(keras.callbacks.Callback):
    """Saves the training state every N steps and at each epoch's end."""

    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable,
                 every_steps: int, steps_per_epoch: int, step: Callable[[], int] | None = None):
        super().__init__()
        self.manager, self.epoch = manager, epoch
        self.every_steps, self.steps_per_epoch = every_steps, steps_per_epoch
        self.step = step
        self.last_saved = -1

    def _current(self) -> int:
        return self.step() if self.step else global_step(self.model)

    def save(self) -> None:
        step = self._current()
        if step == self.last_saved:
            return
        self.epoch.assign(step // self.steps_per_epoch)
        self.manager.save(checkpoint_number=step)
        self.last_saved = step

    def on_train_batch_end(self, batch, logs=None):
        if self._current() % self.every_steps == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()


class StopRequests:
    """SIGINT and SIGTERM while training: finish the current step, then stop.

    The first request sets ``signal`` (callbacks then stop ``fit`` after the step, and
    ``train`` saves a checkpoint); a second one stops at once (KeyboardInterrupt), except
    while the checkpoint is being written. The previous handlers come back on ``restore``.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, report: Callable[[str], None]):
        self.report = report
        self.signal: int | None = None
        self.saving = False
        self.previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for number in self.SIGNALS:
            self.previous[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}

    def _handle(self, number, frame) -> None:
        if self.signal is None:
            self.signal = number
            self.report("stopping after this step to save a checkpoint (press Ctrl-C again "
                        "to stop at once; the last checkpoint stays intact)")
        elif not self.saving:
            raise KeyboardInterrupt


class StopOnRequest(keras.callbacks.Callback):
    """Ends ``fit`` after the step during which a stop was requested."""

    def __init__(self, requests: StopRequests):
        super().__init__()
        self.requests = requests

    def on_train_batch_end(self, batch, logs=None):
        if self.requests.signal is not None:
            self.model.stop_training = True


class ModelFolderWriter(keras.callbacks.Callback):
    """Refreshes the ``.keras`` networks in the model folder at each epoch's end."""

    def __init__(self, model_dir: Path, config: Config, stopping: Callable[[], bool] = bool):
        super().__init__()
        self.model_dir, self.config, self.stopping = model_dir, config, stopping

    def on_epoch_end(self, epoch, logs=None):
        if not self.stopping():  # a stopped epoch is not finished: its checkpoint is enough
            write_networks(self.model_dir, self.config, self.model)


class SampleGrids(keras.callbacks.Callback):
    """label | generated | real for a fixed batch of training examples at each epoch's end:
    to TensorBoard, and every ``every_epochs`` epochs (0: never) to
    ``<model-dir>/samples/epoch_NNN.png``, so a run can be watched without TensorBoard.
    Label maps are drawn in the model's class colours."""

    def __init__(self, log_dir: Path, samples_dir: Path, batch: dict, classes,
                 every_epochs: int = 1, max_images: int = 4,
                 stopping: Callable[[], bool] = bool):
        super().__init__()
        self.log_dir, self.samples_dir, self.stopping = log_dir, samples_dir, stopping
        self.classes, self.every_epochs = classes, every_epochs
        self.writer = None  # opened when training starts, closed by close()
        self.batch = {key: value[:max_images] for key, value in batch.items()}
        self.step: Callable[[], int] = lambda: global_step(self.model)

    def rows(self) -> list[list[np.ndarray]]:
        """One row per example: colourised label map, generated image, real photo."""
        generated = to_uint8(self.model(self.batch, training=False)).numpy()
        real = to_uint8(self.batch["image"]).numpy()
        labels = self.classes.colorize(np.asarray(self.batch["label"]))
        return [list(row) for row in zip(labels, generated, real, strict=True)]

    def on_train_begin(self, logs=None):
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(str(self.log_dir / "images"))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self.stopping():
            return
        rows = self.rows()
        grids = np.stack([np.concatenate(row, axis=1) for row in rows])
        # record_if: Keras's TensorBoard callback may have limited recording to its steps.
        with self.writer.as_default(), tf.summary.record_if(True):
            tf.summary.image("label_generated_real", grids, step=self.step(),
                             max_outputs=len(grids))
        self.writer.flush()
        if self.every_epochs and (epoch + 1) % self.every_epochs == 0:
            write_png_atomic(self.samples_dir / f"epoch_{epoch + 1:03d}.png",
                             contact_sheet(rows))


# -- the model folder -----------------------------------------------------------------


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


def _changed_keys(old, new) -> list[str]:
    return [key for key in new.__dataclass_fields__ if getattr(old, key) != getattr(new, key)]


def _check_model_dir(model_dir: Path, config: Config) -> str | None:
    """Refuse a folder this run must not train into; the latest checkpoint, if any.

    A folder with checkpoints or ``.keras`` networks is a model: its model settings must
    match (and, to resume, the train settings that shape a checkpoint). A folder holding
    only what a failed start left (``config.yaml``) is not; any other non-empty folder is
    someone else's.
    """
    if model_dir.exists() and not model_dir.is_dir():
        raise ModelDirError(f"{model_dir} exists and is not a folder: choose a model folder.")
    # Found now, not after minutes of building: a folder that cannot be created or written.
    ancestor = next(path for path in [model_dir, *model_dir.absolute().parents]
                    if path.exists())
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise ModelDirError(f"cannot write {model_dir}: {ancestor} is "
                            f"{'not a folder' if not ancestor.is_dir() else 'not writable'}.")
    latest = tf.train.latest_checkpoint(str(model_dir / CHECKPOINT_DIR))
    has_networks = (model_dir / NETWORK_FILES["generator"]).is_file()
    if latest is None and not has_networks:
        others = sorted(path.name for path in model_dir.iterdir()
                        if path.name not in START_LEFTOVERS) if model_dir.is_dir() else []
        if others:
            raise ModelDirError(
                f"{model_dir} is not empty ({', '.join(others[:3])}"
                f"{' ...' if len(others) > 3 else ''}) and holds no spade-tf model (no "
                f"{CHECKPOINT_DIR}/, no {NETWORK_FILES['generator']}): choose a new or empty "
                "model folder.")
        return None
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return latest
    from spade_tf.config import load_config

    previous = load_config(path)
    if previous.model != config.model:
        changed = _changed_keys(previous.model, config.model)
        values = ", ".join(f"model.{key}={getattr(previous.model, key)!r} there, "
                           f"{getattr(config.model, key)!r} here" for key in changed)
        raise ConfigError(
            f"{model_dir} holds a model with different settings ({', '.join(changed)}): "
            f"{values}. Use another --model-dir, or the same model settings to resume."
        )
    if latest is not None:
        _check_checkpoint_settings(model_dir, previous, config)
    return latest


def _check_checkpoint_settings(model_dir: Path, previous: Config, config: Config) -> None:
    """Refuse train settings that change what a checkpoint holds, in config terms."""
    for key, why in (
            # mixed_float16 wraps both optimizers in a LossScaleOptimizer: other keys.
            ("mixed_precision", "mixed_float16 adds loss scaling to the optimizers' saved "
                                "state"),
            ("optimizer", "each optimizer saves a state of its own")):
        if not hasattr(previous.train, key):
            continue
        old, new = getattr(previous.train, key), getattr(config.train, key)
        same = (old == "mixed_float16") == (new == "mixed_float16") \
            if key == "mixed_precision" else old == new
        if not same:
            raise ConfigError(
                f"train.{key}={new!r} cannot resume the checkpoints in {model_dir}, written "
                f"with train.{key}={old!r} ({why}): resume with --set train.{key}={old}, or "
                "start a new --model-dir.")


def _saved_step(checkpoint_path: str) -> int:
    """Batches trained when the checkpoint was written, read without building anything."""
    reader = tf.train.load_checkpoint(checkpoint_path)
    if reader.has_tensor(BATCHES_KEY):
        return int(reader.get_tensor(BATCHES_KEY))
    # Written before the batch counter: the generator optimizer's updates.
    for key in ("g_optimizer/inner_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE",
                "g_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"):
        if reader.has_tensor(key):
            return int(reader.get_tensor(key))
    return 0


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
    task_id = getattr(getattr(strategy, "cluster_resolver", None), "task_id", 0)
    return model_dir / f".worker-{task_id}-checkpoints"


class _StartUndo:
    """What this run adds to the model folder, taken back if it fails before a checkpoint.

    A failed first attempt then leaves the folder as it was, and the corrected command
    starts afresh instead of meeting "a model with different settings".
    """

    def __init__(self, model_dir: Path):
        self.model_dir = model_dir
        self.existed = model_dir.is_dir()
        config = model_dir / CONFIG_FILE
        self.config_text = config.read_text() if config.is_file() else None
        self.had = {name: (model_dir / name).exists()
                    for name in (LOG_DIR, SAMPLES_DIR, CHECKPOINT_DIR)}

    def undo(self) -> None:
        if tf.train.latest_checkpoint(str(self.model_dir / CHECKPOINT_DIR)) is not None:
            return  # a checkpoint exists: this is a model now, keep everything
        for name, had in self.had.items():
            if not had:
                shutil.rmtree(self.model_dir / name, ignore_errors=True)
        shutil.rmtree(self.model_dir / ".networks.tmp", ignore_errors=True)
        config = self.model_dir / CONFIG_FILE
        if self.config_text is None:
            config.unlink(missing_ok=True)
        elif config.is_file():
            config.write_text(self.config_text)
        if not self.existed and self.model_dir.is_dir() and not any(self.model_dir.iterdir()):
            self.model_dir.rmdir()


@contextlib.contextmanager
def data_errors(data_dir: str | os.PathLike, files: list[str]):
    """Errors of reading ``data_dir`` as one line: a corrupt record names its shard, a label
    id the model does not know names the id and the folder (no TensorFlow internals)."""
    try:
        with explain_data_errors(files):
            yield
    except tf.errors.InvalidArgumentError as error:
        text = readable_tf_message(error.message)
        if "label ids must be" not in text and "data.preprocess" not in text:
            raise
        raise DataError(f"the data in {data_dir} does not fit the model: {text}") from None


# -- the run --------------------------------------------------------------------------


def train(config: Config, data_dir: str | os.PathLike, model_dir: str | os.PathLike,
          strategy: tf.distribute.Strategy | None = None, vgg_features: Callable | None = None,
          verbose: int | str = "auto", extra_callbacks: list | None = None,
          report: Callable[[str], None] | None = None) -> dict:
    """Train (or resume) ``config`` on ``data_dir`` into ``model_dir``; returns a summary.

    The summary holds ``start_step``, ``final_step``, ``steps_per_epoch``, ``epochs``,
    ``finished`` (True when the folder had trained every step already and nothing ran;
    ``rewritten`` then maps the network files written again from the last checkpoint to
    what was wrong) and, when something ran, ``history`` and ``trainer``. ``report`` gets
    progress lines (strategy, where training starts or resumes). Keras's global dtype policy is
    set to ``train.mixed_precision`` while training and restored afterwards.

    Raises :class:`~spade_tf.errors.Interrupted` after SIGINT or SIGTERM, once the
    current step is done and saved.
    """
    strategy = strategy or tf.distribute.get_strategy()
    model_dir = Path(model_dir)
    report = report or (lambda message: None)
    check_batch_split(config.train.batch_size, strategy.num_replicas_in_sync,
                      f"the {strategy.num_replicas_in_sync} replicas of "
                      f"{type(strategy).__name__}")
    latest = _check_model_dir(model_dir, config)
    # Reads the manifest and checks it against the model before anything is built.
    probe = make_input_fn(data_dir, config.model, config.data, config.train.batch_size,
                          num_epochs=1)
    steps_per_epoch = probe.steps_per_epoch
    epochs = config.train.epochs
    step = _saved_step(latest) if latest is not None else 0
    if step >= epochs * steps_per_epoch:  # nothing to train; lost network files come back
        rewritten = rewrite_damaged_networks(model_dir, config, latest) \
            if is_chief(strategy) else {}
        return {"start_step": step, "final_step": step, "steps_per_epoch": steps_per_epoch,
                "epochs": epochs, "finished": True, "rewritten": rewritten}

    policy = keras.mixed_precision.global_policy()
    undo = _StartUndo(model_dir)
    chief = is_chief(strategy)
    try:
        keras.mixed_precision.set_global_policy(config.train.mixed_precision)
        return _run(config, data_dir, model_dir, strategy, chief, probe, latest,
                    vgg_features, verbose, extra_callbacks or [], report)
    except BaseException:
        if chief:
            undo.undo()
        raise
    finally:
        keras.mixed_precision.set_global_policy(policy)
        if not chief:
            shutil.rmtree(_checkpoint_directory(model_dir, strategy, chief), ignore_errors=True)


def _restore(latest: str, objects: dict, batches: tf.Variable, trainer: GauGAN,
             beta_1: float) -> None:
    """Restore the latest checkpoint; one written before the batch counter existed
    counts the generator optimizer's updates instead. ``beta_1``: this run's
    ``train.beta_1``, named when the checkpoint lacks the first moments it needs."""
    with_counter = tf.train.load_checkpoint(latest).has_tensor(BATCHES_KEY)
    checkpoint = tf.train.Checkpoint(**objects, **({"batches": batches} if with_counter else {}))
    try:
        checkpoint.restore(latest).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        detail = readable_tf_message(str(error)).splitlines()[0][:300]
        if "_momentum" in detail:
            # TorchAdam keeps no first moments with beta_1 = 0 (they equal the gradient).
            raise TrainingError(
                f"cannot resume from {latest}: it holds no Adam first moments (it was trained "
                f"with train.beta_1=0, where torch_adam keeps none) and train.beta_1="
                f"{beta_1} needs them: resume with --set "
                "train.beta_1=0, or start a new --model-dir.") from None
        raise TrainingError(
            f"cannot resume from {latest}: its contents do not match the networks and "
            f"optimizers of this config ({detail}); use the settings it was trained with, "
            "or another model folder.") from None
    if not with_counter:
        batches.assign(global_step(trainer))


def _run(config: Config, data_dir, model_dir: Path, strategy, chief: bool, probe,
         latest: str | None, vgg_features, verbose, extra_callbacks: list,
         report: Callable[[str], None]) -> dict:
    train_config = config.train
    epochs, steps_per_epoch = train_config.epochs, probe.steps_per_epoch
    with strategy.scope():
        trainer = build_trainer(config, vgg_features)
        epoch_variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches")
    objects = {"generator": trainer.generator, "discriminator": trainer.discriminator,
               "g_optimizer": trainer.g_optimizer, "d_optimizer": trainer.d_optimizer,
               "epoch": epoch_variable,
               **({"encoder": trainer.encoder} if trainer.encoder is not None else {})}
    checkpoint = tf.train.Checkpoint(**objects, batches=batches)
    # Every worker restores the chief's latest checkpoint; each saves into its own folder
    # (saving is collective across workers) and only the chief's is kept.
    if latest is not None:
        _restore(latest, objects, batches, trainer, train_config.beta_1)
    elif _start_from_model_folder(model_dir, trainer):
        report(f"starting from the networks in {model_dir}")
    manager = tf.train.CheckpointManager(
        checkpoint, str(_checkpoint_directory(model_dir, strategy, chief)), max_to_keep=3)

    counter = BatchCounter(batches)
    step = counter.value()
    start_epoch, done_in_epoch = divmod(step, steps_per_epoch)
    summary = {"start_step": step, "steps_per_epoch": steps_per_epoch, "epochs": epochs,
               "finished": False}
    requests = StopRequests(report)
    stopping = lambda: requests.signal is not None  # noqa: E731
    checkpointer = Checkpointer(manager, epoch_variable, train_config.checkpoint_every_steps,
                                steps_per_epoch, step=counter.value)
    progress = EpochProgress(epochs, steps_per_epoch)
    callbacks = [
        counter,  # first: the others read the step it counts
        StopOnNaN(step=counter.value),
        StopOnRequest(requests),
        LinearDecay(epochs, train_config.decay_epochs, train_config.g_learning_rate,
                    train_config.d_learning_rate),
        checkpointer,
        *extra_callbacks,
    ]
    images = None
    if chief:
        with data_errors(data_dir, probe.files):
            sample = next(iter(probe(None)))
        images = SampleGrids(model_dir / LOG_DIR, model_dir / SAMPLES_DIR, sample,
                             config.classes(), train_config.sample_every_epochs,
                             stopping=stopping)
        images.step = counter.value
        callbacks += [
            keras.callbacks.TensorBoard(str(model_dir / LOG_DIR), update_freq="epoch",
                                        write_graph=False),
            images,
            ModelFolderWriter(model_dir, config, stopping=stopping),
        ]
    callbacks.append(progress)

    # Training really starts: from here on the folder is this model's.
    if chief:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / CONFIG_FILE).write_text(config.to_yaml())
    name = type(strategy).__name__.lstrip("_").replace("DistributionStrategy", " strategy")
    report(f"{name} with {strategy.num_replicas_in_sync} replica(s); "
           f"global batch {train_config.batch_size}")
    if step:
        report(f"resuming at step {step} (epoch {start_epoch + 1} of {epochs})")

    def fit(first_epoch: int, last_epoch: int, skip_steps: int, steps: int):
        input_fn = make_input_fn(data_dir, config.model, config.data, train_config.batch_size,
                                 seed=train_config.seed, start_epoch=first_epoch,
                                 num_epochs=last_epoch - first_epoch, skip_steps=skip_steps)
        dataset = strategy.distribute_datasets_from_function(input_fn)
        progress.offset = skip_steps
        with data_errors(data_dir, input_fn.files):
            return trainer.fit(dataset, initial_epoch=first_epoch, epochs=last_epoch,
                               steps_per_epoch=steps, callbacks=callbacks, verbose=verbose,
                               shuffle=False)

    # A save is collective across workers: one worker stopping alone would block the rest.
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        requests.install()
    histories = []
    try:
        if done_in_epoch:  # finish the interrupted epoch at its data position first
            histories.append(fit(start_epoch, start_epoch + 1, done_in_epoch,
                                 steps_per_epoch - done_in_epoch))
            start_epoch += 1
        if start_epoch < epochs and not stopping():
            histories.append(fit(start_epoch, epochs, 0, steps_per_epoch))
        if stopping():
            requests.saving = True
            checkpointer.save()
            raise Interrupted(f"interrupted at step {counter.value()}; run the same command "
                              "to resume")
    except KeyboardInterrupt:  # a second request: stopped at once, mid-step
        saved = manager.latest_checkpoint
        if saved is None or not chief:
            raise
        raise Interrupted(f"stopped at once; the last checkpoint (step {_saved_step(saved)}) "
                          "is intact: run the same command to resume") from None
    finally:
        requests.restore()
        if images is not None:
            images.close()
    summary.update(final_step=counter.value(), trainer=trainer,
                   history={key: value for history in histories
                            for key, value in history.history.items()})
    return summary
