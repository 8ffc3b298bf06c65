"""The model folder of a training run: what may be trained into, resume rules, networks.

- :func:`check_model_dir`: refuse a folder this run must not train into (someone else's
  files, a model with other settings, train settings that change what a checkpoint
  holds); returns the latest checkpoint to resume from;
- :func:`saved_step`, :func:`restore_checkpoint`: where a checkpoint resumes, and
  restoring it (checkpoints written before the batch counter, or without the generator
  average a run with ``train.ema_decay > 0`` keeps, included);
- :func:`start_from_model_folder`: a folder without checkpoints but with networks (e.g.
  ``spade-convert-torch``'s) gives the starting weights;
- :class:`StartUndo`: what a run that fails before its first checkpoint takes back;
- :func:`write_networks`: the ``.keras`` networks, staged and renamed into place.

The names of the folder's files are :mod:`spade_tf.layout`'s.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import tensorflow as tf

from spade_tf.atomic import atomic_path, is_staging_name, write_text
from spade_tf.config import Config, ConfigError
from spade_tf.errors import readable_tf_message
from spade_tf.layout import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LOG_DIR,
    NETWORK_FILES,
    NETWORK_STAGING_DIR,
    SAMPLES_DIR,
    TRAINED_NETWORKS,
)
from spade_tf.model_dir import ModelDir, ModelDirError, load_model_dir, write_model_dir
from spade_tf.training.errors import TrainingError
from spade_tf.training.gaugan import GauGAN, global_step

# The batch counter's key in a checkpoint (checkpoints written before it existed lack it).
BATCHES_KEY = "batches/.ATTRIBUTES/VARIABLE_VALUE"
# The generator average's update count (checkpoints of runs without an average lack it).
EMA_UPDATES_KEY = "ema_updates/.ATTRIBUTES/VARIABLE_VALUE"
# What a failed start may leave in a model folder (older versions wrote config.yaml before
# checking the data): not a model yet. Leftovers of an interrupted atomic write (see
# spade_tf.atomic.is_staging_name) are not a model either.
START_LEFTOVERS = {CONFIG_FILE, LOG_DIR, SAMPLES_DIR, CHECKPOINT_DIR, NETWORK_STAGING_DIR}


# -- networks -------------------------------------------------------------------------


def place_staged(staged: Path, target: Path) -> None:
    """Move a file written in a staging folder onto ``target`` through
    :func:`spade_tf.atomic.atomic_path` (flushed, renamed, folder flushed).

    Keras saves only to names ending in ``.keras``, so networks are written under their own
    names in :data:`~spade_tf.layout.NETWORK_STAGING_DIR` first, not at ``atomic_path``'s
    hidden name."""
    with atomic_path(target) as staging:
        os.replace(staged, staging)


def write_networks(model_dir: Path, config: Config, trainer: GauGAN) -> None:
    """Replace the ``.keras`` networks (and ``config.yaml``) one file at a time, each via a
    rename."""
    staging = model_dir / NETWORK_STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    averaged = trainer.average.networks if trainer.average is not None else {}
    write_model_dir(staging, ModelDir(config, trainer.generator, trainer.discriminator,
                                      trainer.encoder, generator_ema=averaged.get("generator"),
                                      encoder_ema=averaged.get("encoder")))
    for path in staging.iterdir():
        place_staged(path, model_dir / path.name)
    staging.rmdir()


# -- what may be trained into ---------------------------------------------------------


def _changed_keys(old, new) -> list[str]:
    return [key for key in new.__dataclass_fields__ if getattr(old, key) != getattr(new, key)]


def check_model_dir(model_dir: Path, config: Config) -> str | None:
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
                        if path.name not in START_LEFTOVERS
                        and not is_staging_name(path.name)) if model_dir.is_dir() else []
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
    old_decay = getattr(previous.train, "ema_decay", 0.0)
    if old_decay > 0 and config.train.ema_decay == 0:
        # Starting to average is fine (from the weights where the run resumes); stopping
        # would leave the folder's generator_ema.keras behind, which inference prefers.
        raise ConfigError(
            f"train.ema_decay=0 cannot resume the run in {model_dir}, which averages its "
            f"generator (train.ema_decay={old_decay!r}: its {NETWORK_FILES['generator_ema']}"
            " would stay behind, older than the generator, and be what inference uses): "
            f"resume with --set train.ema_decay={old_decay}, or start a new --model-dir.")


# -- resume ---------------------------------------------------------------------------


def saved_step(checkpoint_path: str) -> int:
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


def start_from_model_folder(model_dir: Path, trainer: GauGAN) -> bool:
    """Initial weights from .keras networks in the folder (e.g. a converted checkpoint); a
    generator average starts from them too."""
    if not (model_dir / NETWORK_FILES["generator"]).is_file():
        return False
    loaded = load_model_dir(model_dir, networks=TRAINED_NETWORKS)
    for name in TRAINED_NETWORKS:
        source, target = getattr(loaded, name), getattr(trainer, name)
        if source is not None and target is not None:
            target.set_weights(source.get_weights())
    if trainer.average is not None:
        trainer.average.reset(0)
    return True


def checkpoint_directory(model_dir: Path, strategy, chief: bool) -> Path:
    """Where this process saves: the chief into ``checkpoints/``, another worker into a
    hidden folder of its own (removed when its run ends)."""
    if chief:
        return model_dir / CHECKPOINT_DIR
    # Every worker must save (the save is collective); only the chief's copy is kept.
    task_id = getattr(getattr(strategy, "cluster_resolver", None), "task_id", 0)
    return model_dir / f".worker-{task_id}-checkpoints"


def restore_checkpoint(latest: str, objects: dict, batches: tf.Variable, trainer: GauGAN,
                       beta_1: float) -> bool:
    """Restore the latest checkpoint; one written before the batch counter existed
    counts the generator optimizer's updates instead. ``beta_1``: this run's
    ``train.beta_1``, named when the checkpoint lacks the first moments it needs.

    A trainer that averages its generator restores the average too; from a checkpoint
    without one (a run that did not average until now) the average starts from the
    restored weights, at the restored step. Returns False in that case."""
    reader = tf.train.load_checkpoint(latest)
    with_counter = reader.has_tensor(BATCHES_KEY)
    average = trainer.average
    fresh_average = average is not None and not reader.has_tensor(EMA_UPDATES_KEY)
    if fresh_average:
        objects = {key: value for key, value in objects.items()
                   if key not in average.checkpoint_objects()}
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
    if fresh_average:
        average.reset(int(batches.numpy()))
    return not fresh_average


# -- a failed start ------------------------------------------------------------------


class StartUndo:
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
        shutil.rmtree(self.model_dir / NETWORK_STAGING_DIR, ignore_errors=True)
        config = self.model_dir / CONFIG_FILE
        if self.config_text is None:
            config.unlink(missing_ok=True)
        elif config.is_file():
            write_text(config, self.config_text)
        if not self.existed and self.model_dir.is_dir() and not any(self.model_dir.iterdir()):
            self.model_dir.rmdir()

