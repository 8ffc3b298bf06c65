"""A finished run's network files written again from its last checkpoint.

Training refreshes ``generator.keras`` (and ``discriminator.keras``, ``encoder.keras``)
at each epoch's end. Once a run is finished nothing trains, so a file lost or damaged
afterwards (a full disk, a copy stopped halfway) would never be written again; the same
``spade-train`` command rewrites it from the last checkpoint, which holds the weights of
the last epoch's end (the averaged generator's batch norm re-estimated again, as training
wrote it, when the run gives the batches).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import keras

from spade_tf.atomic import write_text
from spade_tf.config import Config
from spade_tf.layout import CONFIG_FILE, NETWORK_FILES, NETWORK_STAGING_DIR
from spade_tf.model_dir import has_average, load_model_dir, network_file_problem
from spade_tf.training.run_folder import place_staged

# train.mixed_precision -> the precision load_model_dir builds under: the rewritten files
# then record the dtype policies that training's own files record.
_PRECISIONS = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def _number(checkpoint: str) -> int:
    """The N of a checkpoint path ``.../ckpt-N`` (what load_model_dir's ``checkpoint`` takes)."""
    return int(checkpoint.rsplit("-", 1)[-1])


def network_problems(model_dir: Path, config: Config,
                     checkpoint: str | None = None) -> dict[str, str]:
    """The network files a finished run of ``config`` holds that are missing or damaged:
    {role: what is wrong}. The averaged ones count where the run averages and
    ``checkpoint`` (its last; None: any) holds the average."""
    encoders = ["encoder"] if config.model.use_vae else []
    roles = ["generator", "discriminator", *encoders]
    if config.train.ema_decay > 0 and (checkpoint is None or has_average(
            model_dir, _number(checkpoint))):
        roles += [f"{role}_ema" for role in ["generator", *encoders]]
    problems = {role: network_file_problem(model_dir / NETWORK_FILES[role]) for role in roles}
    return {role: problem for role, problem in problems.items() if problem is not None}


def rewrite_damaged_networks(model_dir: str | os.PathLike, config: Config,
                             checkpoint: str,
                             reestimate: Callable[[keras.Model], object] | None = None
                             ) -> dict[str, str]:
    """Write again, from ``checkpoint`` (a checkpoint path), those of the run's network
    files that are missing or damaged; returns {file name: what was wrong} (empty: all
    sound, nothing written).

    Each network is saved into training's staging folder
    (:data:`~spade_tf.layout.NETWORK_STAGING_DIR`) and renamed over the old file
    (:func:`~spade_tf.training.run_folder.place_staged`); a missing ``config.yaml`` is
    written atomically first. ``reestimate``: re-estimates the batch norm of the averaged
    generator (:func:`~spade_tf.training.ema.reestimate_batch_norm` over the training
    batches training used) before it is written; None: it keeps the average's statistics.
    """
    model_dir = Path(model_dir)
    problems = network_problems(model_dir, config, checkpoint)
    if not problems:
        return {}
    written = {NETWORK_FILES[role]: problem for role, problem in problems.items()}
    staging = model_dir / NETWORK_STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        if not (model_dir / CONFIG_FILE).is_file():  # the networks are built from it
            write_text(model_dir / CONFIG_FILE, config.with_class_table().to_yaml())
            written[CONFIG_FILE] = "missing"
        loaded = load_model_dir(model_dir, networks=tuple(dict.fromkeys(["generator",
                                                                         *problems])),
                                checkpoint=_number(checkpoint),
                                precision=_PRECISIONS[config.train.mixed_precision])
        if "generator_ema" in problems and reestimate is not None:
            reestimate(loaded.generator_ema)
        for role in problems:
            getattr(loaded, role).save(staging / NETWORK_FILES[role])
        for role in problems:
            place_staged(staging / NETWORK_FILES[role], model_dir / NETWORK_FILES[role])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
