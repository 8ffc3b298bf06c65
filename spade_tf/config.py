"""Experiment configuration: frozen dataclasses loaded from YAML with overrides.

One YAML file per dataset or experiment (``configs/*.yaml``) holds up to four
sections, ``model``, ``data``, ``train`` and ``export``. Every key is checked:
an unknown key or a value of the wrong type stops loading with a message that
names the key. Overrides use dotted keys, as on the command line::

    load_config("configs/ade20k.yaml", ["model.base_filters=32"])

Names follow this project's conventions; people coming from the reference
implementation can read ``REFERENCE_OPTION_NAMES`` for the mapping.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from spade_tf.errors import SpadeError
from spade_tf.geometry import NORM_MODES, NORM_TYPES, generator_geometry
from spade_tf.label_space import MAX_LABEL_ID, LabelSpace

PREPROCESS_MODES = ("resize_and_crop", "fixed", "scale_width_and_crop", "none")
GAN_MODES = ("hinge", "least_squares", "original", "wasserstein")
# "torch_adam": torch.optim.Adam's update (the reference's); "keras_adam": keras's Adam.
OPTIMIZERS = ("torch_adam", "keras_adam")
# The KL term over a batch: the mean over the global batch (independent of how the batch is
# split), or the reference's sum over each replica's examples (grows with the per-GPU batch).
KL_REDUCTIONS = ("global_mean", "per_replica_sum")
# How spade-train places the work: see spade_tf.training.choose_strategy.
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")

# Our key -> the reference implementation's command-line option.
REFERENCE_OPTION_NAMES = {
    "model.num_classes": "label_nc",
    "model.use_dontcare_label": "contain_dontcare_label",
    "model.use_instance_edges": "not no_instance",
    "model.crop_size": "crop_size",
    "model.aspect_ratio": "aspect_ratio",
    "model.num_upsampling_layers": "num_upsampling_layers",
    "model.base_filters": "ngf",
    "model.use_vae": "use_vae",
    "model.latent_dim": "z_dim",
    "model.norm_type": "norm_G (spadesyncbatch3x3 -> sync_batch)",
    "model.norm_mode": "norm_mode (CLADE's fork, tzt101/CLADE)",
    "model.use_spectral_norm": "norm_G (spectral...)",
    "model.disc_filters": "ndf",
    "model.num_discriminators": "num_D",
    "model.disc_layers": "n_layers_D",
    "data.load_size": "load_size",
    "data.preprocess": "preprocess_mode",
    "data.flip": "not no_flip",
    "train.batch_size": "batchSize",
    "train.g_learning_rate": "lr / 2 with TTUR",
    "train.d_learning_rate": "lr * 2 with TTUR",
    "train.decay_epochs": "niter_decay",
    "train.feature_matching_weight": "lambda_feat",
    "train.vgg_weight": "lambda_vgg",
    "train.kl_weight": "lambda_kld",
}


class ConfigError(SpadeError, ValueError):
    """A configuration value or key is invalid; the message names the key."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of the generator, discriminator and encoder."""

    num_classes: int = 8
    use_dontcare_label: bool = False
    dontcare_label: int = 255
    use_instance_edges: bool = False
    crop_size: int = 256
    aspect_ratio: float = 1.0
    num_upsampling_layers: str = "normal"
    base_filters: int = 64
    use_vae: bool = False
    latent_dim: int = 256
    norm_type: str = "sync_batch"
    # "spade" (the reference) or "clade": per-class gamma and beta (docs/clade.md).
    norm_mode: str = "spade"
    use_spectral_norm: bool = True
    spade_hidden_filters: int = 128
    spade_kernel_size: int = 3
    disc_filters: int = 64
    num_discriminators: int = 2
    disc_layers: int = 4
    encoder_filters: int = 64
    encoder_input_size: int = 256
    # Names and colours of the classes: "ade20k", "coco_stuff", "cityscapes", "synthetic",
    # a class file's path, or "" (numbered classes, generated colours): spade_tf.classes.
    # Presentation only: two configs that differ here describe the same network.
    classes: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        _require(self.num_classes >= 1, "model.num_classes", self.num_classes,
                 "a positive class count (e.g. 150 for ADE20K)")
        _require(0 <= self.dontcare_label <= MAX_LABEL_ID, "model.dontcare_label",
                 self.dontcare_label, "a label id in 0..65535 (usually 255)")
        _require(not self.use_dontcare_label or self.dontcare_label >= self.num_classes,
                 "model.dontcare_label", self.dontcare_label,
                 f"an id outside the classes 0..{self.num_classes - 1} (usually 255)")
        _require(self.norm_type in NORM_TYPES, "model.norm_type", self.norm_type,
                 f"one of {list(NORM_TYPES)}")
        _require(self.norm_mode in NORM_MODES, "model.norm_mode", self.norm_mode,
                 f"one of {list(NORM_MODES)} (spade: the reference's; clade: per-class "
                 "modulation, far cheaper)")
        for key in ("base_filters", "latent_dim", "spade_hidden_filters", "disc_filters",
                    "num_discriminators", "disc_layers", "encoder_filters"):
            value = getattr(self, key)
            _require(value >= 1, f"model.{key}", value, "a positive integer")
        _require(self.encoder_input_size >= 128 and self.encoder_input_size % 64 == 0,
                 "model.encoder_input_size", self.encoder_input_size,
                 "a multiple of 64 of at least 128 (the encoder halves its input 6 times; "
                 "256 in the paper)")
        _require(self.spade_kernel_size >= 1 and self.spade_kernel_size % 2 == 1,
                 "model.spade_kernel_size", self.spade_kernel_size,
                 "an odd kernel size such as 3 or 5")
        try:
            generator_geometry(self.crop_size, self.aspect_ratio, self.num_upsampling_layers)
        except ValueError as error:
            raise ConfigError(f"model.{error}") from None

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the generated image."""
        return generator_geometry(self.crop_size, self.aspect_ratio,
                                  self.num_upsampling_layers)[2:]

    @property
    def label_space(self) -> LabelSpace:
        """The label ids the model takes (classes, don't-care id, instance edges)."""
        return LabelSpace.from_model(self)

    @property
    def semantic_channels(self) -> int:
        """Channels of the generator's semantic input: classes, don't-care, edges."""
        return self.label_space.semantic_channels


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the TFRecords are and how examples are preprocessed."""

    path: str = ""
    preprocess: str = "resize_and_crop"
    load_size: int = 286
    flip: bool = True
    shuffle_buffer: int = 256
    num_parallel_reads: int = 4

    def __post_init__(self) -> None:
        _require(self.preprocess in PREPROCESS_MODES, "data.preprocess", self.preprocess,
                 f"one of {list(PREPROCESS_MODES)}")
        _require(self.load_size >= 1, "data.load_size", self.load_size, "a positive size")
        _require(self.shuffle_buffer >= 0, "data.shuffle_buffer", self.shuffle_buffer,
                 "0 (no shuffling) or a positive buffer size")
        _require(self.num_parallel_reads >= 1, "data.num_parallel_reads",
                 self.num_parallel_reads, "a positive integer")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; defaults are the reference's (TTUR, Adam 0 / 0.9)."""

    batch_size: int = 1
    epochs: int = 1
    decay_epochs: int = 0
    g_learning_rate: float = 1e-4
    d_learning_rate: float = 4e-4
    beta_1: float = 0.0
    beta_2: float = 0.9
    gan_mode: str = "hinge"
    feature_matching_weight: float = 10.0
    vgg_weight: float = 10.0
    kl_weight: float = 0.05
    kl_reduction: str = "global_mean"
    optimizer: str = "torch_adam"
    vgg_weights_path: str = ""
    mixed_precision: str = "float32"
    jit_compile: bool = False
    checkpoint_every_steps: int = 1000
    # A PNG grid label | generated | real in <model-dir>/samples every N epochs (0: never).
    sample_every_epochs: int = 1
    seed: int = 0
    # The exponential moving average of the generator's weights (spade_tf.training.ema), what
    # inference then uses: 0 = off (the reference's); imaginaire and OASIS use 0.9999
    # (OASIS 0.999 on Cityscapes). Steps up to ema_start_step copy the weights
    # (imaginaire: 1000; OASIS: 0). The averaged generator's batch-norm statistics are
    # re-estimated over ema_bn_batches training batches before it is written (imaginaire:
    # 30; 0: keep the average of the trained generator's).
    ema_decay: float = 0.0
    ema_start_step: int = 1000
    ema_bn_batches: int = 30

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size,
                 "a positive global batch size")
        _require(self.epochs >= 1, "train.epochs", self.epochs, "a positive epoch count")
        _require(0 <= self.decay_epochs <= self.epochs, "train.decay_epochs",
                 self.decay_epochs, f"0..train.epochs ({self.epochs})")
        _require(self.gan_mode in GAN_MODES, "train.gan_mode", self.gan_mode,
                 f"one of {list(GAN_MODES)}")
        _require(self.kl_reduction in KL_REDUCTIONS, "train.kl_reduction", self.kl_reduction,
                 f"one of {list(KL_REDUCTIONS)}")
        _require(self.optimizer in OPTIMIZERS, "train.optimizer", self.optimizer,
                 f"one of {list(OPTIMIZERS)}")
        _require(self.mixed_precision in ("float32", "mixed_float16", "mixed_bfloat16"),
                 "train.mixed_precision", self.mixed_precision,
                 "'float32', 'mixed_float16' or 'mixed_bfloat16'")
        for key in ("g_learning_rate", "d_learning_rate", "feature_matching_weight",
                    "vgg_weight", "kl_weight"):
            value = getattr(self, key)
            _require(value >= 0, f"train.{key}", value, "a non-negative number")
        _require(self.checkpoint_every_steps >= 1, "train.checkpoint_every_steps",
                 self.checkpoint_every_steps, "a positive step count")
        _require(self.sample_every_epochs >= 0, "train.sample_every_epochs",
                 self.sample_every_epochs, "0 (no sample grids) or a positive epoch count")
        _require(0 <= self.ema_decay < 1, "train.ema_decay", self.ema_decay,
                 "0 (no average) or a decay below 1, e.g. 0.9999")
        _require(self.ema_start_step >= 0, "train.ema_start_step", self.ema_start_step,
                 "0 or a positive step count")
        _require(self.ema_bn_batches >= 0, "train.ema_bn_batches", self.ema_bn_batches,
                 "0 (no re-estimation) or a positive batch count")


# Compute precisions of inference and export (spade_tf.precision maps them to policies).
PRECISIONS = ("float32", "bfloat16", "float16")
PRECISION_HELP = ("compute precision; the network is stored and run in it (spectral norm "
                  "folded, weights cast once): bfloat16 suits CPUs with bf16 units and recent "
                  "GPUs, float16 GPUs")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What the served model accepts."""

    max_batch_size: int = 8
    max_pixels: int = 1024 * 1024
    # The default precision of every inference command (export, synthesize, eval generate):
    # the network is stored and computed in it; see spade_tf.precision.
    precision: str = "float32"

    def __post_init__(self) -> None:
        _require(self.max_batch_size >= 1, "export.max_batch_size", self.max_batch_size,
                 "a positive integer")
        _require(self.max_pixels >= 1, "export.max_pixels", self.max_pixels,
                 "a positive integer")
        _require(self.precision in PRECISIONS, "export.precision", self.precision,
                 f"one of {', '.join(PRECISIONS)}")


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole experiment: one section per stage."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    # The resolved class table (ClassTable.to_dict()) that a model folder's config.yaml
    # carries under "classes", so the model shows its classes wherever it goes; None:
    # resolve model.classes.
    class_table: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False)

    def classes(self):
        """The :class:`~spade_tf.classes.ClassTable` of this model."""
        from spade_tf.classes import ClassTable, class_table

        if self.class_table is not None:
            return ClassTable.from_dict(self.class_table, "config.yaml's classes")
        model = self.model
        return class_table(model.classes, model.num_classes,
                           model.dontcare_label if model.use_dontcare_label else None)

    def with_class_table(self) -> Config:
        """This config carrying its resolved class table (what a model folder stores)."""
        return dataclasses.replace(self, class_table=self.classes().to_dict())

    def to_dict(self) -> dict[str, Any]:
        values = {name: dataclasses.asdict(getattr(self, name)) for name in _SECTIONS}
        if self.class_table is not None:
            values[CLASSES_SECTION] = dict(self.class_table)
        return values

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _reference_name(option: str) -> str:
    """``"not no_instance"`` -> ``"no_instance"``; ``"lr / 2 with TTUR"`` -> ``"lr"``."""
    words = option.split()
    return words[1] if words[0] == "not" else words[0]


def _key_hint(key: str, section: str | None, fields) -> str:
    """``" (the reference's ngf is model.base_filters)"``, a close match, or nothing."""
    ours = [name for name, option in REFERENCE_OPTION_NAMES.items()
            if _reference_name(option) == key and (section is None or name.startswith(section))]
    if ours:
        return f" (the reference's {key} is {' or '.join(ours)} here)"
    close = difflib.get_close_matches(key, list(fields), n=1)
    return f" (did you mean {section}.{close[0]}?)" if close else ""


def _require(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value!r} is invalid: expected {expected}.")


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` if it fits ``annotation``; ints are accepted for floats."""
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, annotation)
    if not ok:
        raise ConfigError(
            f"{key}={value!r} has type {type(value).__name__}: expected {annotation.__name__}."
        )
    return value


def _build_section(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section} must be a mapping of keys to values, got {values!r}.")
    hints = typing.get_type_hints(cls)
    fields = {field.name for field in dataclasses.fields(cls)}
    checked = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown key {section}.{key}{_key_hint(key, section, fields)}: "
                              f"known keys are {', '.join(sorted(fields))}.")
        checked[key] = _check_type(f"{section}.{key}", value, hints[key])
    return cls(**checked)


_SECTIONS = {field.name: field for field in dataclasses.fields(Config)
             if field.name != "class_table"}
CLASSES_SECTION = "classes"


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from nested mappings."""
    values = values or {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {values!r}.")
    unknown = set(values) - set(_SECTIONS) - {CLASSES_SECTION}
    if unknown:
        raise ConfigError(
            f"unknown section {sorted(unknown)[0]!r}: expected some of {list(_SECTIONS)}."
        )
    hints = typing.get_type_hints(Config)
    sections = {
        name: _build_section(hints[name], name, values.get(name) or {}) for name in _SECTIONS
    }
    table = values.get(CLASSES_SECTION)
    if table is not None and not isinstance(table, Mapping):
        raise ConfigError(f"{CLASSES_SECTION} must be a class table (a mapping with "
                          f"'classes'), got {table!r}.")
    return Config(**sections, class_table=table)


def parse_override(override: str) -> tuple[list[str], Any]:
    """Split ``"model.base_filters=32"`` into its key path and YAML-parsed value."""
    key, sep, raw = override.partition("=")
    path = key.strip().split(".")
    if not sep or len(path) != 2 or not all(path):
        hint = _key_hint(path[0], None, ()) if len(path) == 1 else ""
        raise ConfigError(f"override {override!r} is malformed{hint}: expected "
                          "section.key=value, e.g. model.base_filters=32.")
    return path, yaml.safe_load(raw) if raw.strip() else ""


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of nested ``values`` with each ``section.key=value`` applied."""
    merged = {section: dict(content or {}) for section, content in values.items()}
    for override in overrides:
        (section, key), value = parse_override(override)
        merged.setdefault(section, {})[key] = value
    return merged


def add_override_argument(parser) -> None:
    """The ``--set section.key=value`` option every command that takes a config shares."""
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable)")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    values: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist.")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        if not isinstance(values, Mapping):
            raise ConfigError(f"config file {path} must hold a mapping of sections.")
    return config_from_dict(apply_overrides(values, overrides))

