"""SPADE: spatially-adaptive denormalization (Park et al., CVPR 2019)."""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.backend import computed_after
from spade_tf.layers.common import (
    check_norm_type,
    parameter_free_norm,
    reference_conv,
)
from spade_tf.layers.resize import legacy_nearest_resize


@keras.saving.register_keras_serializable(package="spade_tf")
class SPADE(keras.layers.Layer):
    """Normalizes ``x`` without parameters, then modulates it from a semantic map.

    ``out = norm(x) * (1 + gamma(s)) + beta(s)`` where ``s`` is the semantic map
    resized to ``x``'s size with PyTorch's legacy nearest, and gamma and beta are
    ``conv(relu(conv(s)))`` with ``hidden_filters`` channels in between.

    Call as ``spade(x, segmap, training=...)`` with NHWC tensors; ``segmap`` may be
    at any resolution (usually the full image size).

    Args:
        norm_type: ``"sync_batch"`` (the reference's default; synchronized across
            replicas under a ``tf.distribute`` strategy), ``"batch"`` or ``"instance"``.
        hidden_filters: channels of the shared hidden conv (128 in the paper).
        kernel_size: kernel of the three convs (3 in the paper).
    """

    def __init__(self, norm_type: str = "sync_batch", hidden_filters: int = 128,
                 kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        check_norm_type(norm_type)
        if hidden_filters < 1:
            raise ValueError(f"hidden_filters={hidden_filters}: expected a positive integer.")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size}: expected an odd size such as 3.")
        self.norm_type = norm_type
        self.hidden_filters = hidden_filters
        self.kernel_size = kernel_size
        self.param_free_norm = parameter_free_norm(norm_type, "param_free_norm")
        self.mlp_shared = reference_conv(hidden_filters, kernel_size, "mlp_shared")
        self.mlp_gamma = None
        self.mlp_beta = None

    def build(self, x_shape, segmap_shape):
        filters = x_shape[-1]
        self.mlp_gamma = reference_conv(filters, self.kernel_size, "mlp_gamma")
        self.mlp_beta = reference_conv(filters, self.kernel_size, "mlp_beta")
        self.param_free_norm.build(x_shape)
        hidden_shape = (*segmap_shape[:-1], self.hidden_filters)
        self.mlp_shared.build(segmap_shape)
        self.mlp_gamma.build(hidden_shape)
        self.mlp_beta.build(hidden_shape)

    def call(self, x, segmap, training=None):
        normalized = ops.cast(self.param_free_norm(x, training=training), x.dtype)
        # The label-map branch runs when this layer is reached, as in PyTorch, not at the
        # start of the network (see computed_after).
        segmap = computed_after(segmap, x)
        segmap = legacy_nearest_resize(ops.cast(segmap, x.dtype), ops.shape(x)[1:3])
        hidden = ops.relu(self.mlp_shared(segmap))
        gamma = self.mlp_gamma(hidden)
        beta = self.mlp_beta(hidden)
        return normalized * (1.0 + gamma) + beta

    def compute_output_shape(self, x_shape, segmap_shape):
        return x_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "norm_type": self.norm_type,
            "hidden_filters": self.hidden_filters,
            "kernel_size": self.kernel_size,
        })
        return config
