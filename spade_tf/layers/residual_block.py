"""The SPADE residual block of the generator."""

from __future__ import annotations

import keras

from spade_tf.geometry import NORM_MODES
from spade_tf.layers.clade import CLADE
from spade_tf.layers.common import (
    check_norm_type,
    leaky_relu,
    maybe_spectral,
    reference_conv,
)
from spade_tf.layers.spade import SPADE


@keras.saving.register_keras_serializable(package="spade_tf")
class SPADEResBlock(keras.layers.Layer):
    """Residual block with SPADE normalization, as in the reference generator.

    Main path: ``conv_1(lrelu(norm_1(conv_0(lrelu(norm_0(x))))))`` with 3x3 convs
    and ``min(in, filters)`` channels in the middle. The shortcut is learned,
    ``conv_s(norm_s(x))`` (1x1, no bias, no activation), exactly when the input
    and output channel counts differ. All norms are :class:`SPADE` layers fed the
    same semantic map (or, with ``norm_mode="clade"``, :class:`CLADE` layers: with
    instance edges each then adds a channel, and the convolutions after them take one
    input channel more, as in CLADE's official code). Call as
    ``block(x, segmap, training=...)``.

    Args:
        filters: output channels.
        norm_type: the parameter-free norm, ``"sync_batch"``, ``"batch"`` or ``"instance"``.
        use_spectral_norm: spectral normalization on ``conv_0``, ``conv_1`` and
            ``conv_s`` (the reference's default).
        hidden_filters: hidden channels of each SPADE (unused by CLADE).
        kernel_size: kernel size of each SPADE's convs (unused by CLADE).
        norm_mode: ``"spade"`` (the reference) or ``"clade"`` (per-class modulation).
        use_instance_edges: the map's last channel is the instance-edge map; only CLADE
            treats it apart (SPADE convolves it with the classes).
    """

    def __init__(self, filters: int, norm_type: str = "sync_batch",
                 use_spectral_norm: bool = True, hidden_filters: int = 128,
                 kernel_size: int = 3, norm_mode: str = "spade",
                 use_instance_edges: bool = False, **kwargs):
        super().__init__(**kwargs)
        if filters < 1:
            raise ValueError(f"filters={filters}: expected a positive channel count.")
        check_norm_type(norm_type)
        if norm_mode not in NORM_MODES:
            raise ValueError(
                f"norm_mode={norm_mode!r} is unknown: expected one of {list(NORM_MODES)}.")
        self.filters = filters
        self.norm_type = norm_type
        self.use_spectral_norm = use_spectral_norm
        self.hidden_filters = hidden_filters
        self.kernel_size = kernel_size
        self.norm_mode = norm_mode
        self.use_instance_edges = bool(use_instance_edges)
        self.learned_shortcut = None
        self.norm_0 = self.norm_1 = self.norm_s = None
        self.conv_0 = self.conv_1 = self.conv_s = None

    def _norm(self, name: str) -> SPADE | CLADE:
        if self.norm_mode == "clade":
            return CLADE(norm_type=self.norm_type, use_instance_edges=self.use_instance_edges,
                         name=name)
        return SPADE(norm_type=self.norm_type, hidden_filters=self.hidden_filters,
                     kernel_size=self.kernel_size, name=name)

    def build(self, x_shape, segmap_shape):
        in_filters = x_shape[-1]
        middle_filters = min(in_filters, self.filters)
        self.learned_shortcut = in_filters != self.filters
        self.norm_0 = self._norm("norm_0")
        self.norm_1 = self._norm("norm_1")
        self.conv_0 = maybe_spectral(reference_conv(middle_filters, 3, "conv_0"),
                                     self.use_spectral_norm)
        self.conv_1 = maybe_spectral(reference_conv(self.filters, 3, "conv_1"),
                                     self.use_spectral_norm)
        middle_shape = (*x_shape[:-1], middle_filters)
        self.norm_0.build(x_shape, segmap_shape)
        self.conv_0.build(self.norm_0.compute_output_shape(x_shape, segmap_shape))
        self.norm_1.build(middle_shape, segmap_shape)
        self.conv_1.build(self.norm_1.compute_output_shape(middle_shape, segmap_shape))
        if self.learned_shortcut:
            self.norm_s = self._norm("norm_s")
            self.conv_s = maybe_spectral(
                reference_conv(self.filters, 1, "conv_s", use_bias=False),
                self.use_spectral_norm,
            )
            self.norm_s.build(x_shape, segmap_shape)
            self.conv_s.build(self.norm_s.compute_output_shape(x_shape, segmap_shape))

    def call(self, x, segmap, training=None):
        if self.learned_shortcut:
            shortcut = self.conv_s(self.norm_s(x, segmap, training=training), training=training)
        else:
            shortcut = x
        dx = self.conv_0(leaky_relu(self.norm_0(x, segmap, training=training), training),
                         training=training)
        dx = self.conv_1(leaky_relu(self.norm_1(dx, segmap, training=training), training),
                         training=training)
        return shortcut + dx

    def compute_output_shape(self, x_shape, segmap_shape):
        return (*x_shape[:-1], self.filters)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "norm_type": self.norm_type,
            "use_spectral_norm": self.use_spectral_norm,
            "hidden_filters": self.hidden_filters,
            "kernel_size": self.kernel_size,
            "norm_mode": self.norm_mode,
            "use_instance_edges": self.use_instance_edges,
        })
        return config
