"""Reference PyTorch checkpoints -> a spade-tf model folder.

The conversion is strict: every checkpoint key must feed exactly one Keras
variable with the right shape, and every variable must be fed. Before checking
keys one by one, the architecture the checkpoint implies (semantic channels,
VAE or not, filters, upsampling mode, norms) is compared with the config, so a
wrong config is explained in its own terms rather than as a list of shapes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from spade_tf.config import Config, ModelConfig
from spade_tf.convert.checkpoint import ConversionError, load_state_dict
from spade_tf.convert.mapping import (
    Target,
    discriminator_targets,
    encoder_targets,
    generator_targets,
)
from spade_tf.geometry import generator_geometry
from spade_tf.model_dir import ModelDir, check_target, save_model_dir
from spade_tf.models import build_discriminator, build_encoder, build_generator

# Keys one of which every checkpoint of each network has; their absence means a wrong file.
SPADE_KEY = "head_0.norm_0.mlp_shared.0.weight"
# CLADE's official fork (tzt101/CLADE, --norm_mode clade): per-class tables, no convs.
CLADE_KEY = "head_0.norm_0.class_specified_affine.weight"
CLADE_EDGES_KEY = "head_0.norm_0.inst_conv.weight"
SIGNATURE_KEYS = {
    "generator": (SPADE_KEY, CLADE_KEY),
    "discriminator": ("discriminator_0.model0.0.weight",),
    "encoder": ("fc_mu.weight",),
}
IMAGE_CHANNELS = 3
MAX_LISTED_PROBLEMS = 5

Progress = Callable[[str, int, int], None]


def _semantic_description(model: ModelConfig, config_name: str) -> str:
    return (
        f"{config_name} gives {model.semantic_channels} (num_classes={model.num_classes}, "
        f"use_dontcare_label={str(model.use_dontcare_label).lower()}, "
        f"use_instance_edges={str(model.use_instance_edges).lower()})"
    )


def _require_signature(state: dict, role: str, path: Path) -> None:
    if any(key in state for key in SIGNATURE_KEYS[role]):
        return
    for other, other_keys in SIGNATURE_KEYS.items():
        if any(key in state for key in other_keys):
            raise ConversionError(
                f"{path} is a {other} checkpoint, but it was given as the {role}."
            )
    raise ConversionError(
        f"{path} is not a SPADE {role} checkpoint: it has no {SIGNATURE_KEYS[role][0]!r} "
        f"(its first keys: {', '.join(list(state)[:3])})."
    )


def _check_norm_mode(state: dict, model: ModelConfig, config_name: str) -> None:
    """SPADE or CLADE, as the config says; CLADE without its distance-map variant."""
    clade = CLADE_KEY in state
    if clade != (model.norm_mode == "clade"):
        found, wanted = ("CLADE", "clade") if clade else ("SPADE", "spade")
        raise ConversionError(
            f"the generator checkpoint is a {found} generator (its norms hold "
            f"{'per-class tables' if clade else 'convolutions'}), but {config_name} has "
            f"model.norm_mode='{model.norm_mode}': add --set model.norm_mode={wanted}."
        )
    if clade and any(".dist_conv_" in key for key in state):
        raise ConversionError(
            "the generator checkpoint is a CLADE-ICPE one (trained with --add_dist: its "
            "norms read a distance map, keys '...dist_conv_w'), which spade-tf does not "
            "build (docs/clade.md says why): convert a CLADE checkpoint trained without "
            "--add_dist (the official ones whose folder name has no '_dist')."
        )


def _check_generator(state: dict, model: ModelConfig, config_name: str) -> None:
    _check_norm_mode(state, model, config_name)
    clade = model.norm_mode == "clade"
    if clade:  # the class table's rows, and the edge channel when inst_conv is there
        edges = CLADE_EDGES_KEY in state
        channels = state[CLADE_KEY].shape[0] + int(edges)
    else:
        shared = state[SPADE_KEY]
        channels = shared.shape[1]
    if channels != model.semantic_channels:
        raise ConversionError(
            f"the generator checkpoint expects {channels} semantic channels; "
            f"{_semantic_description(model, config_name)}."
        )
    problems = []
    if clade and edges != model.use_instance_edges:
        problems.append(
            f"it was trained {'with' if edges else 'without'} instance edges "
            f"(model.use_instance_edges={str(model.use_instance_edges).lower()})"
        )
    if not clade and (shared.shape[0] != model.spade_hidden_filters
                      or shared.shape[2] != model.spade_kernel_size):
        problems.append(
            f"its SPADE layers have {shared.shape[0]} hidden filters and {shared.shape[2]}x"
            f"{shared.shape[2]} kernels (model.spade_hidden_filters="
            f"{model.spade_hidden_filters}, model.spade_kernel_size={model.spade_kernel_size})"
        )
    checkpoint_vae = state["fc.weight"].ndim == 2 if "fc.weight" in state else model.use_vae
    if checkpoint_vae != model.use_vae:
        problems.append(
            f"it was trained {'with' if checkpoint_vae else 'without'} the VAE style encoder "
            f"(model.use_vae={str(model.use_vae).lower()})"
        )
    conv_key = next((k for k in ("head_0.conv_0.weight_orig", "head_0.conv_0.weight")
                     if k in state), None)
    if conv_key is not None and state[conv_key].shape[0] != 16 * model.base_filters:
        problems.append(
            f"its first blocks have {state[conv_key].shape[0]} filters, i.e. base_filters="
            f"{state[conv_key].shape[0] // 16} (model.base_filters={model.base_filters})"
        )
    if conv_key is not None and (conv_key.endswith("_orig")) != model.use_spectral_norm:
        problems.append(
            f"it {'uses' if conv_key.endswith('_orig') else 'does not use'} spectral norm "
            f"(model.use_spectral_norm={str(model.use_spectral_norm).lower()})"
        )
    has_up_4 = any(key.startswith("up_4.") for key in state)
    if has_up_4 != (model.num_upsampling_layers == "most"):
        problems.append(
            f"it {'has' if has_up_4 else 'lacks'} the up_4 block of num_upsampling_layers="
            f"'most' (model.num_upsampling_layers='{model.num_upsampling_layers}')"
        )
    has_statistics = "head_0.norm_0.param_free_norm.running_mean" in state
    if has_statistics != (model.norm_type != "instance"):
        problems.append(
            f"its SPADE norm is {'batch' if has_statistics else 'instance'} norm "
            f"(model.norm_type='{model.norm_type}')"
        )
    if checkpoint_vae and model.use_vae and not problems:
        start_height, start_width = generator_geometry(
            model.crop_size, model.aspect_ratio, model.num_upsampling_layers)[:2]
        expected = 16 * model.base_filters * start_height * start_width
        if state["fc.weight"].shape[0] != expected:
            problems.append(
                f"its VAE dense layer makes {state['fc.weight'].shape[0]} values, but "
                f"crop_size={model.crop_size}, aspect_ratio={model.aspect_ratio} and "
                f"num_upsampling_layers='{model.num_upsampling_layers}' start the generator "
                f"from {start_height}x{start_width}x{16 * model.base_filters} = {expected}"
            )
    if problems:
        raise ConversionError(
            f"the generator checkpoint does not match {config_name}: " + "; ".join(problems) + "."
        )


def _check_discriminator(state: dict, model: ModelConfig, config_name: str) -> None:
    first = state[SIGNATURE_KEYS["discriminator"][0]]
    semantic = first.shape[1] - IMAGE_CHANNELS
    if semantic != model.semantic_channels:
        raise ConversionError(
            f"the discriminator checkpoint expects {semantic} semantic channels (plus "
            f"{IMAGE_CHANNELS} image channels); {_semantic_description(model, config_name)}."
        )
    scales = len({key.split(".")[0] for key in state if key.startswith("discriminator_")})
    stages = len({key.split(".")[1] for key in state if key.startswith("discriminator_0.")})
    problems = []
    if scales != model.num_discriminators:
        problems.append(f"it has {scales} scales (model.num_discriminators="
                        f"{model.num_discriminators})")
    if stages - 1 != model.disc_layers:
        problems.append(f"it has {stages - 1} conv layers per scale before the output "
                        f"(model.disc_layers={model.disc_layers})")
    if first.shape[0] != model.disc_filters:
        problems.append(f"its first conv has {first.shape[0]} filters (model.disc_filters="
                        f"{model.disc_filters})")
    if problems:
        raise ConversionError(
            f"the discriminator checkpoint does not match {config_name}: "
            + "; ".join(problems) + "."
        )


def _check_encoder(state: dict, model: ModelConfig, config_name: str) -> None:
    if not model.use_vae:
        raise ConversionError(
            f"an encoder checkpoint was given but {config_name} has model.use_vae=false: "
            "set model.use_vae=true (the generator checkpoint must be a VAE one too)."
        )
    mean = state[SIGNATURE_KEYS["encoder"][0]]
    if mean.shape[0] != model.latent_dim:
        raise ConversionError(
            f"the encoder checkpoint makes {mean.shape[0]}-dimensional latents; "
            f"{config_name} has model.latent_dim={model.latent_dim}."
        )


def _match(state: dict, targets: list[Target], role: str, path: Path) -> None:
    """Every key feeds one target with the right shape, and every target is fed."""
    expected = {target.key: target for target in targets}
    problems = [
        f"missing key {key!r} (expected shape {target.torch_shape()})"
        for key, target in expected.items() if key not in state
    ]
    problems += [
        f"unexpected key {key!r} (shape {tuple(value.shape)})"
        for key, value in state.items() if key not in expected
    ]
    for key, target in expected.items():
        want = target.torch_shape()
        if key in state and want is not None and tuple(state[key].shape) != want:
            problems.append(
                f"key {key!r} has shape {tuple(state[key].shape)} in the checkpoint, the "
                f"model expects {want}"
            )
    if problems:
        listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        raise ConversionError(
            f"the {role} checkpoint {path} does not fit the model: {listed}"
            + (f"; and {more} more problem{'' if more == 1 else 's'}." if more > 0 else ".")
        )


def _assign(state: dict, targets: list[Target], role: str, progress: Progress | None) -> None:
    for done, target in enumerate(targets, start=1):
        if target.variable is not None:
            value = target.to_keras(state[target.key]).astype(target.variable.dtype)
            target.variable.assign(value)
        if progress is not None:
            progress(role, done, len(targets))


def convert_reference_checkpoints(
    config: Config,
    out_dir: str | os.PathLike,
    generator: str | os.PathLike,
    encoder: str | os.PathLike | None = None,
    discriminator: str | os.PathLike | None = None,
    config_name: str = "the config",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Convert the reference's ``*_net_G.pth`` (and E, D) into a model folder.

    ``config`` supplies what weights cannot tell (class count, upsampling mode,
    crop size, aspect ratio); it is checked against the checkpoints and written
    with the models. Raises :class:`ConversionError` with a clear message on any
    mismatch, leaving nothing at ``out_dir``.
    """
    # Cheap checks first: a refused --out fails before any checkpoint is read.
    check_target(out_dir, overwrite)
    paths = {"generator": generator, "encoder": encoder, "discriminator": discriminator}
    states = {}
    for role, path in paths.items():
        if path is not None:
            states[role] = load_state_dict(path, role)
            _require_signature(states[role], role, Path(path))
    checks = {"generator": _check_generator, "discriminator": _check_discriminator,
              "encoder": _check_encoder}
    for role, state in states.items():
        checks[role](state, config.model, config_name)

    builders = {"generator": (build_generator, generator_targets),
                "discriminator": (build_discriminator, discriminator_targets),
                "encoder": (build_encoder, encoder_targets)}
    networks = {}
    for role, state in states.items():
        build, targets_of = builders[role]
        network = build(config.model)
        targets = targets_of(network)
        _match(state, targets, role, Path(paths[role]))
        _assign(state, targets, role, progress)
        networks[role] = network
    return save_model_dir(out_dir, ModelDir(config=config, **networks), overwrite=overwrite)
