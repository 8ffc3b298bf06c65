"""Names on disk: the model folder ``spade-train`` writes and the export ``spade-export``
writes. The one owner of these names; TensorFlow-free, so commands check folders before
their slow start-up.

A model folder (``spade-train --out``, ``spade-convert-torch --out``)::

    config.yaml            the settings, class table resolved
    generator.keras        the networks of the last finished epoch (NETWORK_FILES)
    discriminator.keras
    encoder.keras          VAE models only
    generator_ema.keras    the averaged generator (and encoder_ema.keras): runs with
                           train.ema_decay > 0 (spade_tf.training.ema)
    checkpoints/ckpt-<N>   training's tf.train checkpoints (resume, --checkpoint)
    logs/                  TensorBoard summaries
    samples/epoch_NNN.png  a sample grid per epoch

An export (TF Serving's layout): ``<export_base>/<model_name>/<integer version>/`` holding
``saved_model.pb``, ``variables/``, and in ``assets.extra/`` the warm-up requests and
``spade_model.json`` (:mod:`spade_tf.export_metadata`).
"""

from __future__ import annotations

import re
from pathlib import Path

CONFIG_FILE = "config.yaml"
NETWORK_FILES = {
    "generator": "generator.keras",
    "discriminator": "discriminator.keras",
    "encoder": "encoder.keras",
    # The exponential moving average of the generator's (and encoder's) weights, spectral
    # norm folded in: what inference uses when the folder has it.
    "generator_ema": "generator_ema.keras",
    "encoder_ema": "encoder_ema.keras",
}
# The networks that train (the others are averages of them).
TRAINED_NETWORKS = ("generator", "discriminator", "encoder")
# Which generator (and encoder) inference uses: the trained weights or their average.
WEIGHTS = ("ema", "raw")
# weights -> the roles of its generator and encoder in NETWORK_FILES.
WEIGHT_ROLES = {"raw": ("generator", "encoder"), "ema": ("generator_ema", "encoder_ema")}
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
SAMPLES_DIR = "samples"
# Where training stages the networks of a finished epoch before renaming them into place.
NETWORK_STAGING_DIR = ".networks.tmp"

# spade-export --format tflite: <export_base>/<model_name>[.<quantization>].tflite
TFLITE_QUANTIZATIONS = ("float32", "float16", "int8")
TFLITE_SUFFIX = ".tflite"

SAVED_MODEL_FILE = "saved_model.pb"
# Only plain ASCII digits name a version ("12"); anything else is not a version folder.
VERSION_NAME = re.compile(r"[0-9]+")
# Where TF Serving looks for warm-up requests inside a version folder.
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# Written beside the SavedModel: what the model expects (read by clients and the server).
SPADE_METADATA_FILE = "assets.extra/spade_model.json"


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` looks like a model folder (its config and generator are there)."""
    return (path / CONFIG_FILE).is_file() and (path / NETWORK_FILES["generator"]).is_file()


def version_folders(folder: Path) -> dict[int, Path]:
    """The integer version folders of ``folder`` that hold a SavedModel, by version
    (ascending); anything else, and an unreadable ``folder``, gives none."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return {}
    versions = {int(entry.name): entry for entry in entries
                if VERSION_NAME.fullmatch(entry.name) and entry.is_dir()
                and (entry / SAVED_MODEL_FILE).is_file()}
    return dict(sorted(versions.items()))


def next_version(model_base: Path) -> int:
    """The version a new export of ``model_base`` takes: one above every integer folder
    (with or without a SavedModel yet: another export may be writing it)."""
    try:
        taken = [int(entry.name) for entry in model_base.iterdir()
                 if entry.is_dir() and VERSION_NAME.fullmatch(entry.name)]
    except OSError:
        taken = []
    return max(taken, default=0) + 1


def encoder_file(weights: str) -> str:
    """The encoder file that goes with ``weights`` ("raw" or "ema")."""
    return NETWORK_FILES[WEIGHT_ROLES[weights][1]]


def tflite_path(export_base: str | Path, model_name: str, quantization: str) -> Path:
    """Where ``spade-export --format tflite`` writes: ``<base>/<name>.tflite`` for float32,
    ``<base>/<name>.<quantization>.tflite`` otherwise."""
    middle = "" if quantization == "float32" else f".{quantization}"
    return Path(export_base) / f"{model_name}{middle}{TFLITE_SUFFIX}"
