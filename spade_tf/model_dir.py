"""The saved-model folder that converter, trainer and exporter share.

A model folder holds ``config.yaml`` (the resolved configuration, including the
settings weights cannot tell, such as the class count and the upsampling mode)
and one ``.keras`` file per network: ``generator.keras`` always,
``discriminator.keras`` and ``encoder.keras`` when present, and the averaged generator
``generator_ema.keras`` (and ``encoder_ema.keras``) of a run with ``train.ema_decay > 0``
(the names: :mod:`spade_tf.layout`). Folders are written atomically (:mod:`spade_tf.atomic`):
everything goes to a hidden sibling first and is renamed into place only when complete,
so a failure never leaves a half-written model behind.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
import zlib
from pathlib import Path

import keras

from spade_tf import atomic
from spade_tf.config import Config, load_config
from spade_tf.errors import SpadeError
from spade_tf.layout import CHECKPOINT_DIR, CONFIG_FILE, NETWORK_FILES, WEIGHTS

# What every .keras file holds (Keras's zip layout).
KERAS_MEMBERS = ("config.json", "model.weights.h5")
ZIP_MAGIC = b"PK\x03\x04"


class ModelDirError(SpadeError, ValueError):
    """A model folder is missing, incomplete, or would overwrite something."""


@dataclasses.dataclass
class ModelDir:
    """The contents of a model folder."""

    config: Config
    generator: keras.Model | None = None  # None only where only the average was loaded
    discriminator: keras.Model | None = None
    encoder: keras.Model | None = None
    # The averaged generator and encoder of a run with train.ema_decay > 0 (spectral norm
    # folded in): spade_tf.training.ema.
    generator_ema: keras.Model | None = None
    encoder_ema: keras.Model | None = None
    # Which weights ``generator`` and ``encoder`` hold: "raw" (as trained) or "ema" (the
    # averaged ones, where spade_tf.inference_loader.load_for_inference picked them).
    weights: str = "raw"


def check_target(target: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse a ``target`` folder that may not be written: a file, or a folder that is not
    empty (unless ``overwrite``). Call it before long work, so a wrong ``--out`` fails at
    once, and write with :func:`spade_tf.atomic.atomic_directory`, ``replace`` as
    :func:`replaces` says."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ModelDirError(f"{target} exists and is not a folder.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ModelDirError(
            f"{target} already exists and is not empty: choose another folder or allow "
            "overwriting (--overwrite)."
        )


def replaces(target: str | os.PathLike, overwrite: bool = False) -> bool:
    """Whether writing ``target`` (accepted by :func:`check_target`) replaces a folder: with
    ``overwrite``, or an empty folder, which holds nothing to lose."""
    return overwrite or Path(target).is_dir()


def write_model_dir(folder: str | os.PathLike, model: ModelDir) -> None:
    """Write ``model`` into an existing (staging) folder."""
    folder = Path(folder)
    # With its class table resolved, so the folder shows its classes wherever it goes.
    (folder / CONFIG_FILE).write_text(model.config.with_class_table().to_yaml())
    for name, filename in NETWORK_FILES.items():
        network = getattr(model, name)
        if network is not None:
            network.save(folder / filename)


def save_model_dir(target: str | os.PathLike, model: ModelDir, overwrite: bool = False) -> Path:
    """Write ``model`` to ``target`` atomically; returns the folder. An existing folder that
    is not empty is refused unless ``overwrite`` (:func:`check_target`)."""
    check_target(target, overwrite)
    try:
        with atomic.atomic_directory(target, replace=replaces(target, overwrite)) as staging:
            write_model_dir(staging, model)
    except atomic.TargetExists:  # written by someone else meanwhile
        check_target(target, overwrite)
        raise
    return Path(target)


def network_file_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with a ``.keras`` file on disk, in words ("missing", "truncated: ..."),
    or None for a complete archive. Checks the zip's checksums, not the network inside."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        if path.stat().st_size == 0:
            return "empty"
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            failing = archive.testzip()
    except zipfile.BadZipFile:
        with open(path, "rb") as file:
            head = file.read(len(ZIP_MAGIC))
        # A zip starts with its first entry and ends with its directory: the start without
        # the end is a file cut short (a full disk, a copy stopped halfway).
        return ("truncated: not a complete zip archive" if head == ZIP_MAGIC
                else "not a .keras file: not a zip archive")
    except (OSError, EOFError, zlib.error, ValueError) as error:
        return f"unreadable: {getattr(error, 'strerror', None) or error}"
    if failing is not None:
        return f"damaged: {failing} inside it fails its checksum"
    lacking = [name for name in KERAS_MEMBERS if name not in names]
    if lacking:
        return f"incomplete: the archive lacks {', '.join(lacking)}"
    return None


def _rewrite_hint(folder: Path) -> str:
    """How to get a network file back: from the run's checkpoints, else by converting."""
    steps = checkpoint_steps(folder)
    if steps:
        return (f"write it again: run the same spade-train command (it rewrites it from the "
                f"last checkpoint, step {steps[-1]}), or use that checkpoint directly with "
                "--checkpoint latest (spade-export, spade-synthesize).")
    return ("write it again: convert it again (spade-convert-torch --overwrite), or train "
            "into a new model folder with spade-train.")


def damaged_network_error(path: Path, problem: str) -> ModelDirError:
    """The error for a network file that cannot be loaded: what is wrong and what to run."""
    return ModelDirError(f"{path} is damaged or incomplete ({problem}); "
                         f"{_rewrite_hint(path.parent)}")


def _load_network(path: Path) -> keras.Model:
    """One ``.keras`` file, or a ModelDirError saying what is wrong with it (Keras reports a
    truncated zip as "File not found", which sends users looking for the wrong thing)."""
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # zipfile, h5py and Keras raise many types for bad files
        problem = network_file_problem(path)
        if problem is None:  # a sound archive Keras cannot read: its own words say why
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            problem = f"{type(error).__name__}: {detail[:200]}"
        raise damaged_network_error(path, problem) from None


def checkpoint_steps(folder: str | os.PathLike) -> list[int]:
    """The steps of the training checkpoints kept in ``folder/checkpoints``, oldest first."""
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(str(Path(folder) / CHECKPOINT_DIR))
    paths = list(state.all_model_checkpoint_paths) if state is not None else []
    return sorted(int(path.rsplit("-", 1)[1]) for path in paths
                  if path.rsplit("-", 1)[-1].isdigit())


def checkpoint_path(folder: str | os.PathLike, which: str | int) -> str:
    """The training checkpoint ``which`` ("latest" or a step) of a model folder."""
    steps = checkpoint_steps(folder)
    listed = ", ".join(map(str, steps)) if steps else "none"
    if str(which) == "latest":
        if not steps:
            raise ModelDirError(f"{folder} has no training checkpoints ({CHECKPOINT_DIR}/ is "
                                "missing or empty): omit --checkpoint to use its .keras "
                                "networks.")
        step = steps[-1]
    else:
        try:
            step = int(which)
        except ValueError:
            raise ModelDirError(f"checkpoint {which!r}: expected 'latest' or a step number "
                                f"(kept: {listed}).") from None
        if step not in steps:
            raise ModelDirError(f"{folder} keeps no checkpoint of step {step}: the kept steps "
                                f"are {listed} (or use 'latest').")
    return str(Path(folder) / CHECKPOINT_DIR / f"ckpt-{step}")


def _held_networks(path: str) -> set[str]:
    """The networks (checkpoint keys: "generator", "generator_ema" ...) a checkpoint holds."""
    import tensorflow as tf

    return {name.split("/", 1)[0] for name, _ in tf.train.list_variables(path)}


def has_average(folder: str | os.PathLike, checkpoint: str | int | None = None) -> bool:
    """Whether a model folder holds an averaged generator: ``generator_ema.keras``, or a run
    whose config averages (``train.ema_decay > 0``; its file may be missing or damaged); with
    ``checkpoint``, whether that training checkpoint holds one."""
    folder = Path(folder)
    if checkpoint is not None:
        return "generator_ema" in _held_networks(checkpoint_path(folder, checkpoint))
    if (folder / NETWORK_FILES["generator_ema"]).is_file():
        return True
    if not (folder / CONFIG_FILE).is_file():
        return False
    return load_config(folder / CONFIG_FILE).train.ema_decay > 0


def choose_weights(folder: str | os.PathLike, weights: str | None = None,
                   checkpoint: str | int | None = None) -> str:
    """``weights`` ("ema", "raw"), checked against the folder; None: "ema" where the folder
    (or ``checkpoint``) holds an averaged generator, else "raw"."""
    if weights is not None and weights not in WEIGHTS:
        raise ModelDirError(f"weights {weights!r} is unknown: expected one of {list(WEIGHTS)} "
                            "(ema: the averaged generator, raw: the trained one).")
    averaged = has_average(folder, checkpoint) if weights != "raw" else False
    if weights == "ema" and not averaged:
        where = f"checkpoint {checkpoint} of {folder}" if checkpoint is not None else folder
        raise ModelDirError(
            f"{where} holds no averaged generator ({NETWORK_FILES['generator_ema']}): it was "
            "trained with train.ema_decay=0 (the reference's way, the raw generator only). "
            "Use --weights raw, or leave --weights out.")
    return "ema" if averaged else "raw"


def _restore_checkpoint(loaded: dict, path: str) -> None:
    """Give the built networks the weights of a training checkpoint."""
    import tensorflow as tf

    checkpoint = tf.train.Checkpoint(**loaded)
    try:
        checkpoint.restore(path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise ModelDirError(f"the checkpoint {path} does not fit the networks its folder's "
                            f"{CONFIG_FILE} describes ({str(error).splitlines()[0][:200]})."
                            ) from None


def _networks_from_checkpoint(config: Config, networks: tuple[str, ...], path: str) -> dict:
    """``networks`` built from the config and given the checkpoint's weights: no ``.keras``
    file is read, so a damaged one does not stand between a run and its checkpoints."""
    from spade_tf.models import build_discriminator, build_encoder, build_generator

    # The averaged networks have spectral norm folded in (spade_tf.training.ema).
    folded = dataclasses.replace(config.model, use_spectral_norm=False)
    builders = {"generator": lambda: build_generator(config.model),
                "discriminator": lambda: build_discriminator(config.model),
                "encoder": lambda: build_encoder(config.model),
                "generator_ema": lambda: build_generator(folded),
                "encoder_ema": lambda: build_encoder(folded)}
    held = _held_networks(path)
    if "generator" not in networks and "generator_ema" not in held:
        raise ModelDirError(f"the checkpoint {path} holds no averaged generator (it was "
                            "trained with train.ema_decay=0): use the raw weights.")
    wanted = [name for name in networks if name == "generator" or (
        name in held and (not name.startswith("encoder") or config.model.use_vae))]
    built = {name: builders[name]() for name in wanted}
    _restore_checkpoint(built, path)
    return built


def load_model_dir(folder: str | os.PathLike, networks: tuple[str, ...] = tuple(NETWORK_FILES),
                   checkpoint: str | int | None = None,
                   precision: str = "float32") -> ModelDir:
    """Load the config and those of ``networks`` the folder has (the generator is required;
    or, for the averaged weights alone, ``generator_ema``, refused where the folder has none).

    ``checkpoint`` ("latest" or a step) takes the weights from that training checkpoint
    instead of the ``.keras`` files (which are refreshed at each epoch's end): the
    networks are built from ``config.yaml``, and no ``.keras`` file is needed.
    ``precision`` ("bfloat16", "float16") builds the networks under Keras's mixed policy
    of that type (float32 weights, reduced compute): what
    :func:`~spade_tf.precision.with_precision` makes of a loaded network, without a
    float32 copy beside it.
    """
    import spade_tf.layers  # noqa: F401  (registers the custom layers for deserialization)
    import spade_tf.models  # noqa: F401
    from spade_tf.precision import building_under, mixed_policy, require_precision

    with building_under(mixed_policy(precision)):
        loaded = _load_model_dir(Path(folder), networks, checkpoint)
    for network in (loaded.generator, loaded.encoder, loaded.generator_ema,
                    loaded.encoder_ema):
        if network is not None:
            require_precision(network, precision, "loaded")
    return loaded


def _load_model_dir(folder: Path, networks: tuple[str, ...],
                    checkpoint: str | int | None) -> ModelDir:
    main = next((name for name in ("generator", "generator_ema") if name in networks), None)
    if main is None:
        raise ModelDirError(f"load_model_dir needs a generator (generator or generator_ema); "
                            f"asked for {networks}.")
    generator = folder / NETWORK_FILES["generator"]
    has_config = (folder / CONFIG_FILE).is_file()
    if not has_config or not (generator.is_file() or checkpoint_steps(folder)):
        raise ModelDirError(
            f"{folder} is not a spade-tf model folder: expected {CONFIG_FILE} and "
            f"{NETWORK_FILES['generator']} in it (written by spade-train or spade-convert-torch)."
        )
    config = load_config(folder / CONFIG_FILE)
    if checkpoint is not None:
        weights = checkpoint_path(folder, checkpoint)
        return ModelDir(config=config, **_networks_from_checkpoint(config, networks, weights))
    if not generator.is_file():  # checkpoints without it: a run whose file was lost
        raise damaged_network_error(generator, "missing")
    if main == "generator_ema":
        choose_weights(folder, "ema")  # refuses a folder that never averaged
        if not (folder / NETWORK_FILES[main]).is_file():
            raise damaged_network_error(folder / NETWORK_FILES[main], "missing")
    loaded = {name: _load_network(folder / NETWORK_FILES[name]) for name in networks
              if (folder / NETWORK_FILES[name]).is_file()}
    return ModelDir(config=config, **loaded)
