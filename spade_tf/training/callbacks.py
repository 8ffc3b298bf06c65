"""The callbacks of a training run (``train`` puts them in this order).

- :class:`BatchCounter`: counts the batches trained, in a variable the checkpoints hold;
- :class:`StopOnNaN`: stops with an error naming the loss term that became NaN;
- :class:`StopRequests` (signal handlers, not a callback) and :class:`StopOnRequest`: SIGINT
  or SIGTERM finish the current step, then ``fit`` ends;
- :class:`LinearDecay`: the reference's learning-rate schedule;
- :class:`Checkpointer`: a checkpoint every N steps and at each epoch's end;
- :class:`AverageBatchNorm`: the averaged generator's batch-norm statistics re-estimated at
  each epoch's end, for the samples and the model folder, then put back;
- :class:`SampleGrids`: label | generated | real to TensorBoard and ``samples/`` (the
  averaged generator's images when training keeps one);
- :class:`ModelFolderWriter`: the ``.keras`` networks refreshed at each epoch's end;
- :class:`~spade_tf.training.progress.EpochProgress` (its own module): the progress bar.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from spade_tf.atomic import atomic_path
from spade_tf.config import Config
from spade_tf.inference_rules import to_uint8
from spade_tf.training.ema import (
    GeneratorAverage,
    batch_norm_statistics,
    reestimate_batch_norm,
    set_batch_norm_statistics,
)
from spade_tf.training.errors import LossBecameNaN
from spade_tf.training.gaugan import global_step
from spade_tf.training.run_folder import write_networks
from spade_tf.visualize import contact_sheet


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


class AverageBatchNorm(keras.callbacks.Callback):
    """At each epoch's end (one not stopped), the averaged generator's batch-norm statistics
    re-estimated over training batches (:func:`~spade_tf.training.ema.reestimate_batch_norm`)
    for the callbacks after this one (samples, model folder); the average's own statistics
    come back before the next step or checkpoint. Every worker runs it (the synchronized
    batch norm's all-reduce is collective).

    ``batches(epoch)``: the batches of the re-estimation after ``epoch`` (0-based).
    ``step``: a :func:`~spade_tf.training.ema.reestimation_step` of the averaged generator.
    """

    def __init__(self, average: GeneratorAverage, batches: Callable[[int], object],
                 step: Callable, stopping: Callable[[], bool] = bool):
        super().__init__()
        self.network = average.networks["generator"]
        self.batches, self.step, self.stopping = batches, step, stopping
        self.saved: list | None = None

    def on_epoch_end(self, epoch, logs=None):
        if self.stopping():
            return
        self.saved = batch_norm_statistics(self.network)
        reestimate_batch_norm(self.network, self.batches(epoch), self.step)

    def restore(self) -> None:
        if self.saved is not None:
            set_batch_norm_statistics(self.network, self.saved)
            self.saved = None

    def on_epoch_begin(self, epoch, logs=None):
        self.restore()

    def on_train_batch_begin(self, batch, logs=None):
        self.restore()

    def on_train_end(self, logs=None):
        self.restore()


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
    Label maps are drawn in the model's class colours. Generated by the averaged generator
    when the trainer keeps one (what inference uses), else by the generator."""

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
            with atomic_path(self.samples_dir / f"epoch_{epoch + 1:03d}.png") as staging:
                Image.fromarray(contact_sheet(rows)).save(staging, format="PNG")
