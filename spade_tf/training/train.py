"""Training GauGAN with ``model.fit``: strategy, checkpoints, resume, logs.

``train(config, data_dir, model_dir)`` builds the networks under a ``tf.distribute``
strategy, feeds them with ``strategy.distribute_datasets_from_function``, and writes
into ``model_dir``:

- ``config.yaml``: the resolved configuration (a resumed run must have the same model
  section);
- ``checkpoints/``: generator, discriminator, encoder, both optimizers, the epoch and the
  step (batches trained), the generator average when ``train.ema_decay > 0``, every
  ``train.checkpoint_every_steps`` steps, at each epoch's end and when SIGINT or SIGTERM
  stops training. TensorFlow writes a checkpoint's files
  first and points the ``checkpoint`` index at it last, so an interrupted save never
  replaces the previous good checkpoint;
- ``logs/``: TensorBoard scalars (every loss term, learning rates) and image grids
  (label | generated | real);
- ``generator.keras`` (and ``discriminator.keras``, ``encoder.keras``; with an average,
  ``generator_ema.keras`` and ``encoder_ema.keras``, batch norm re-estimated) with
  ``config.yaml``: the model folder that ``spade-export`` reads, refreshed at each epoch's
  end.

A run started again with the same ``model_dir`` resumes from the latest checkpoint at
the same step, optimizer state and data position. A model folder written by
``spade-convert-torch`` (no checkpoints yet) is used as the starting weights. Nothing is
written into ``model_dir`` before training really starts, and a run that fails before
its first checkpoint takes back what it wrote, so the corrected command can start
afresh. Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves a checkpoint and
raises :class:`~spade_tf.errors.Interrupted`.

This module is the run; its parts live beside it: the strategy in
:mod:`~spade_tf.training.strategy`, the callbacks in :mod:`~spade_tf.training.callbacks`
and :mod:`~spade_tf.training.progress`, the model folder's rules (what may be trained into,
resume, the networks written each epoch, what a failed start takes back) in
:mod:`~spade_tf.training.run_folder`, the trainer in :mod:`~spade_tf.training.gaugan`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from spade_tf.atomic import write_text
from spade_tf.config import Config
from spade_tf.data.manifest import DataError
from spade_tf.data.pipeline import explain_data_errors, make_input_fn
from spade_tf.errors import Interrupted, readable_tf_message
from spade_tf.layout import CONFIG_FILE, LOG_DIR, SAMPLES_DIR
from spade_tf.models import build_semantic_input
from spade_tf.training.callbacks import (
    AverageBatchNorm,
    BatchCounter,
    Checkpointer,
    LinearDecay,
    ModelFolderWriter,
    SampleGrids,
    StopOnNaN,
    StopOnRequest,
    StopRequests,
)
from spade_tf.training.ema import reestimate_batch_norm, reestimation_step
from spade_tf.training.gaugan import build_trainer
from spade_tf.training.progress import EpochProgress
from spade_tf.training.recovery import rewrite_damaged_networks
from spade_tf.training.run_folder import (
    StartUndo,
    check_model_dir,
    checkpoint_directory,
    restore_checkpoint,
    saved_step,
    start_from_model_folder,
)
from spade_tf.training.strategy import check_batch_split, is_chief


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


# -- the generator average's batch norm -----------------------------------------------


def _reestimation_batches(config: Config, data_dir, strategy, steps_per_epoch: int):
    """epoch -> the first ``train.ema_bn_batches`` training batches of that epoch's order
    (the same wherever the run resumed), distributed as training's."""
    train_config = config.train
    count = train_config.ema_bn_batches

    def batches(epoch: int):
        input_fn = make_input_fn(data_dir, config.model, config.data, train_config.batch_size,
                                 seed=train_config.seed, start_epoch=epoch,
                                 num_epochs=math.ceil(count / steps_per_epoch))
        dataset = strategy.distribute_datasets_from_function(input_fn)
        with data_errors(data_dir, input_fn.files):
            yield from itertools.islice(iter(dataset), count)

    return batches


def _averaged_generator_inputs(generator: keras.Model, semantic_input: Callable[[dict], object]):
    """batch -> the averaged generator's inputs; a random style latent for VAE models (as
    imaginaire re-estimates, and as inference without a style photo draws it)."""

    def inputs(batch: dict) -> dict:
        semantic = semantic_input(batch)
        values = {"semantic": semantic}
        if getattr(generator, "use_vae", False):
            values["latent"] = tf.random.normal([tf.shape(semantic)[0], generator.latent_dim],
                                                dtype=semantic.dtype)
        return values

    return inputs


def _rewrite_reestimation(config: Config, data_dir, steps_per_epoch: int):
    """For a finished run's lost ``generator_ema.keras``: its batch norm re-estimated over the
    batches training re-estimated it with after the last epoch (on one device: the same
    global-batch statistics)."""
    if not config.train.ema_bn_batches:
        return None

    def reestimate(generator: keras.Model) -> None:
        semantic_input = build_semantic_input(config.model)
        inputs = _averaged_generator_inputs(
            generator, lambda batch: semantic_input(batch["label"], batch.get("instance")))
        strategy = tf.distribute.get_strategy()
        batches = _reestimation_batches(config, data_dir, strategy, steps_per_epoch)
        reestimate_batch_norm(generator, batches(config.train.epochs - 1),
                              reestimation_step(generator, inputs, strategy))

    return reestimate


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
    latest = check_model_dir(model_dir, config)
    # Reads the manifest and checks it against the model before anything is built.
    probe = make_input_fn(data_dir, config.model, config.data, config.train.batch_size,
                          num_epochs=1)
    steps_per_epoch = probe.steps_per_epoch
    epochs = config.train.epochs
    step = saved_step(latest) if latest is not None else 0
    if step >= epochs * steps_per_epoch:  # nothing to train; lost network files come back
        rewritten = rewrite_damaged_networks(
            model_dir, config, latest, _rewrite_reestimation(config, data_dir, steps_per_epoch)
        ) if is_chief(strategy) else {}
        return {"start_step": step, "final_step": step, "steps_per_epoch": steps_per_epoch,
                "epochs": epochs, "finished": True, "rewritten": rewritten}

    policy = keras.mixed_precision.global_policy()
    undo = StartUndo(model_dir)
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
            shutil.rmtree(checkpoint_directory(model_dir, strategy, chief), ignore_errors=True)


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
               **({"encoder": trainer.encoder} if trainer.encoder is not None else {}),
               **(trainer.average.checkpoint_objects() if trainer.average is not None else {})}
    checkpoint = tf.train.Checkpoint(**objects, batches=batches)
    # Every worker restores the chief's latest checkpoint; each saves into its own folder
    # (saving is collective across workers) and only the chief's is kept.
    if latest is not None:
        if not restore_checkpoint(latest, objects, batches, trainer, train_config.beta_1):
            report(f"the checkpoint holds no generator average: averaging from step "
                   f"{int(batches.numpy())}'s weights")
    elif start_from_model_folder(model_dir, trainer):
        report(f"starting from the networks in {model_dir}")
    manager = tf.train.CheckpointManager(
        checkpoint, str(checkpoint_directory(model_dir, strategy, chief)), max_to_keep=3)

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
    if trainer.average is not None and train_config.ema_bn_batches:
        callbacks.append(AverageBatchNorm(
            trainer.average, _reestimation_batches(config, data_dir, strategy, steps_per_epoch),
            reestimation_step(trainer.average.networks["generator"],
                              _averaged_generator_inputs(trainer.average.networks["generator"],
                                                         trainer.semantic), strategy),
            stopping=stopping))
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
        write_text(model_dir / CONFIG_FILE, config.to_yaml())
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
        raise Interrupted(f"stopped at once; the last checkpoint (step {saved_step(saved)}) "
                          "is intact: run the same command to resume") from None
    finally:
        requests.restore()
        if images is not None:
            images.close()
    summary.update(final_step=counter.value(), trainer=trainer,
                   history={key: value for history in histories
                            for key, value in history.history.items()})
    return summary
