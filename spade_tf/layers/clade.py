"""CLADE: class-adaptive denormalization (Tan et al., "Rethinking Spatially-Adaptive
Normalization", arXiv 2004.02867; "Efficient Semantic Image Synthesis via Class-Adaptive
Normalization", TPAMI 2021)."""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.backend import class_lookup, computed_after
from spade_tf.layers.common import (
    check_norm_type,
    parameter_free_norm,
    reference_conv,
)
from spade_tf.layers.resize import legacy_nearest_resize


@keras.saving.register_keras_serializable(package="spade_tf")
class CLADE(keras.layers.Layer):
    """Normalizes ``x`` without parameters, then scales and shifts it per semantic class.

    ``out = norm(x) * gamma[c] + beta[c]``, where ``c`` is each pixel's class in the
    semantic map resized to ``x``'s size with PyTorch's legacy nearest (the class is the
    arg-max of the one-hot channels, as in the official code), and ``gamma``, ``beta``
    are learned ``[classes, channels]`` tables. Unlike SPADE's ``1 + gamma``, gamma
    multiplies directly; it starts uniform in [0, 1) and beta at zero, as in the
    official code (whose initialisation leaves these tables alone).

    With ``use_instance_edges=True`` the map's last channel is the instance-edge map: it
    is not a class; a 1x1 convolution of it (``inst_conv``, one filter with bias) is
    concatenated to the output, which then has **one channel more** than ``x``. That is
    the official code's rule (its residual block's convolutions take that extra channel).

    Call as ``clade(x, segmap, training=...)`` with NHWC tensors; ``segmap`` is the
    one-hot map (classes, don't-care, then the edge channel when used) at any resolution.
    The layer has no convolution over the map: its cost is a lookup, whatever the class
    count.

    Args:
        norm_type: ``"sync_batch"`` (default), ``"batch"`` or ``"instance"``.
        use_instance_edges: the map's last channel is the instance-edge map.
    """

    def __init__(self, norm_type: str = "sync_batch", use_instance_edges: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        check_norm_type(norm_type)
        self.norm_type = norm_type
        self.use_instance_edges = bool(use_instance_edges)
        self.param_free_norm = parameter_free_norm(norm_type, "param_free_norm")
        self.inst_conv = None
        self.num_classes = None

    def build(self, x_shape, segmap_shape):
        channels = x_shape[-1]
        classes = segmap_shape[-1] - (1 if self.use_instance_edges else 0)
        if classes < 1:
            raise ValueError(
                f"the semantic map has {segmap_shape[-1]} channel(s): CLADE needs at least "
                "one class channel" + (" besides the instance-edge channel (last)"
                                       if self.use_instance_edges else "") + ".")
        self.num_classes = classes
        self.gamma = self.add_weight(
            name="gamma", shape=(classes, channels),
            initializer=keras.initializers.RandomUniform(0.0, 1.0))
        self.beta = self.add_weight(name="beta", shape=(classes, channels),
                                    initializer="zeros")
        self.param_free_norm.build(x_shape)
        if self.use_instance_edges:
            self.inst_conv = reference_conv(1, 1, "inst_conv")
            self.inst_conv.build((*segmap_shape[:-1], 1))

    def call(self, x, segmap, training=None):
        normalized = ops.cast(self.param_free_norm(x, training=training), x.dtype)
        # Reached in program order, as in PyTorch (see computed_after).
        segmap = legacy_nearest_resize(computed_after(segmap, x), ops.shape(x)[1:3])
        # The map is one-hot (SemanticInput's): the arg-max of its 0/1 integers is the class.
        # (Keras's float arg-max adds a sign-bit test that TFLite's builtins lack.)
        ids = ops.argmax(ops.cast(segmap[..., :self.num_classes] > 0.5, "int32"), axis=-1)
        gamma = class_lookup(ops.cast(self.gamma, x.dtype), ids)
        beta = class_lookup(ops.cast(self.beta, x.dtype), ids)
        out = normalized * gamma + beta
        if not self.use_instance_edges:
            return out
        edges = self.inst_conv(ops.cast(segmap[..., -1:], x.dtype))
        return ops.concatenate([out, ops.cast(edges, out.dtype)], axis=-1)

    def compute_output_shape(self, x_shape, segmap_shape):
        return (*x_shape[:-1], x_shape[-1] + (1 if self.use_instance_edges else 0))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"norm_type": self.norm_type,
                       "use_instance_edges": self.use_instance_edges})
        return config
