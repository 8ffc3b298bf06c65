"""Keras layers of SPADE (and CLADE), importable into any Keras 3 model."""

from spade_tf.layers.batch_norm import ParameterFreeBatchNorm
from spade_tf.layers.clade import CLADE
from spade_tf.layers.common import reference_initializer
from spade_tf.layers.pooling import AveragePoolExcludingPadding
from spade_tf.layers.residual_block import SPADEResBlock
from spade_tf.layers.resize import LegacyNearestResize, legacy_nearest_resize
from spade_tf.layers.semantic import SemanticInput, instance_edges, semantic_one_hot
from spade_tf.layers.spade import SPADE
from spade_tf.layers.spectral_norm import SpectralNormalization

__all__ = [
    "CLADE",
    "SPADE",
    "AveragePoolExcludingPadding",
    "LegacyNearestResize",
    "ParameterFreeBatchNorm",
    "SPADEResBlock",
    "SemanticInput",
    "SpectralNormalization",
    "instance_edges",
    "legacy_nearest_resize",
    "reference_initializer",
    "semantic_one_hot",
]
