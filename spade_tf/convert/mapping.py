"""Which reference ``state_dict`` key feeds which Keras variable, and how.

The tables are derived from the built Keras networks, whose layer names follow
the reference's module names, so the same code serves every configuration.
Layouts: ``"conv"`` (out, in, kh, kw) -> (kh, kw, in, out); ``"dense"``
(out, in) -> (in, out); ``"copy"`` unchanged (biases, running statistics,
spectral-norm vectors, CLADE's [classes, channels] tables); ``"ignored"`` read but not
stored (batch-norm ``num_batches_tracked``, which Keras does not keep).

CLADE networks (``model.norm_mode: clade``) use the keys of CLADE's official fork
(tzt101/CLADE): ``<norm>.class_specified_affine.weight`` / ``.bias`` are the layer's
``gamma`` / ``beta``, ``<norm>.inst_conv`` its edge convolution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import keras
import numpy as np

from spade_tf.layers.batch_norm import ParameterFreeBatchNorm
from spade_tf.layers.clade import CLADE
from spade_tf.layers.residual_block import SPADEResBlock
from spade_tf.layers.spade import SPADE
from spade_tf.layers.spectral_norm import SpectralNormalization


@dataclasses.dataclass(frozen=True)
class Target:
    key: str
    variable: keras.Variable | None
    layout: str

    def torch_shape(self) -> tuple[int, ...] | None:
        """The shape the checkpoint must hold for this key (None: any)."""
        if self.variable is None:
            return None
        shape = tuple(self.variable.shape)
        if self.layout == "conv":
            kh, kw, fin, fout = shape
            return (fout, fin, kh, kw)
        if self.layout == "dense":
            return (shape[1], shape[0])
        return shape

    def to_keras(self, value: np.ndarray) -> np.ndarray:
        if self.layout == "conv":
            return value.transpose(2, 3, 1, 0)
        if self.layout == "dense":
            return value.transpose(1, 0)
        return value


def _weighted_layer(layer: keras.layers.Layer, prefix: str) -> Iterator[Target]:
    """A conv or dense layer, with or without spectral norm."""
    inner = layer.layer if isinstance(layer, SpectralNormalization) else layer
    layout = "conv" if isinstance(inner, keras.layers.Conv2D) else "dense"
    if isinstance(layer, SpectralNormalization):
        yield Target(f"{prefix}.weight_orig", inner.kernel, layout)
        yield Target(f"{prefix}.weight_u", layer.u, "copy")
        yield Target(f"{prefix}.weight_v", layer.v, "copy")
    else:
        yield Target(f"{prefix}.weight", inner.kernel, layout)
    if inner.use_bias:
        yield Target(f"{prefix}.bias", inner.bias, "copy")


def _statistics(layer: SPADE | CLADE, prefix: str) -> Iterator[Target]:
    norm = layer.param_free_norm
    if isinstance(norm, ParameterFreeBatchNorm):
        yield Target(f"{prefix}.param_free_norm.running_mean", norm.moving_mean, "copy")
        yield Target(f"{prefix}.param_free_norm.running_var", norm.moving_variance, "copy")
        yield Target(f"{prefix}.param_free_norm.num_batches_tracked", None, "ignored")


def _clade(layer: CLADE, prefix: str) -> Iterator[Target]:
    yield from _statistics(layer, prefix)
    yield Target(f"{prefix}.class_specified_affine.weight", layer.gamma, "copy")
    yield Target(f"{prefix}.class_specified_affine.bias", layer.beta, "copy")
    if layer.use_instance_edges:
        yield from _weighted_layer(layer.inst_conv, f"{prefix}.inst_conv")


def _spade(layer: SPADE | CLADE, prefix: str) -> Iterator[Target]:
    if isinstance(layer, CLADE):
        yield from _clade(layer, prefix)
        return
    yield from _statistics(layer, prefix)
    yield from _weighted_layer(layer.mlp_shared, f"{prefix}.mlp_shared.0")
    yield from _weighted_layer(layer.mlp_gamma, f"{prefix}.mlp_gamma")
    yield from _weighted_layer(layer.mlp_beta, f"{prefix}.mlp_beta")


def _residual_block(block: SPADEResBlock, prefix: str) -> Iterator[Target]:
    yield from _weighted_layer(block.conv_0, f"{prefix}.conv_0")
    yield from _weighted_layer(block.conv_1, f"{prefix}.conv_1")
    if block.learned_shortcut:
        yield from _weighted_layer(block.conv_s, f"{prefix}.conv_s")
    yield from _spade(block.norm_0, f"{prefix}.norm_0")
    yield from _spade(block.norm_1, f"{prefix}.norm_1")
    if block.learned_shortcut:
        yield from _spade(block.norm_s, f"{prefix}.norm_s")


def generator_targets(generator: keras.Model) -> list[Target]:
    targets = list(_weighted_layer(generator.get_layer("fc"), "fc"))
    for layer in generator.layers:
        if isinstance(layer, SPADEResBlock):
            targets.extend(_residual_block(layer, layer.name))
    targets.extend(_weighted_layer(generator.get_layer("conv_img"), "conv_img"))
    return targets


def discriminator_targets(discriminator: keras.Model) -> list[Target]:
    targets = []
    last = discriminator.num_layers
    for scale in range(discriminator.num_discriminators):
        for stage in range(last + 1):
            layer = discriminator.get_layer(f"discriminator_{scale}_model{stage}_conv")
            # Normalized stages nest the conv one level deeper: Sequential(Sequential(conv, norm)).
            inner = "0" if stage in (0, last) else "0.0"
            targets.extend(_weighted_layer(layer, f"discriminator_{scale}.model{stage}.{inner}"))
    return targets


def encoder_targets(encoder: keras.Model) -> list[Target]:
    targets = []
    for layer in encoder.layers:
        if layer.name.startswith("layer") and layer.name.endswith("_conv"):
            targets.extend(_weighted_layer(layer, f"{layer.name[:-len('_conv')]}.0"))
    targets.extend(_weighted_layer(encoder.get_layer("fc_mu"), "fc_mu"))
    targets.extend(_weighted_layer(encoder.get_layer("fc_var"), "fc_var"))
    return targets
