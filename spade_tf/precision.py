"""Inference at reduced precision: the same weights, computed in bfloat16 or float16.

``with_precision(network, "bfloat16")`` rebuilds a generator or encoder under Keras's
``mixed_bfloat16`` policy and gives it the original's weights. Variables stay float32
(so the weights are exactly the trained ones); convolutions and activations run in the
reduced type, while the parameter-free norms, spectral-norm sigma and the output layer
stay float32 (see the layers). ``bfloat16`` runs on CPUs with bf16 units (AVX512-BF16,
AMX) and recent GPUs; ``float16`` is meant for GPUs: on a CPU it is emulated and slow.
"""

from __future__ import annotations

import contextlib

import keras

from spade_tf.config import PRECISIONS
from spade_tf.errors import SpadeError

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class PrecisionError(SpadeError, ValueError):
    """An unknown precision name."""


def policy_name(precision: str) -> str:
    """The Keras dtype policy for a precision name ("bfloat16" -> "mixed_bfloat16")."""
    if precision not in _POLICIES:
        raise PrecisionError(
            f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    return _POLICIES[precision]


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Build layers under ``precision``'s policy inside the block; restore it after."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy(policy_name(precision))
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def network_precision(network: keras.Model) -> str:
    """The precision name a network computes in (from its convolutions' dtype policies)."""
    compute = {layer.dtype_policy.compute_dtype for layer in network._flatten_layers()
               if isinstance(layer, keras.layers.Conv2D)}
    for precision, dtype in (("bfloat16", "bfloat16"), ("float16", "float16")):
        if dtype in compute:
            return precision
    return "float32"


def with_precision(network: keras.Model, precision: str) -> keras.Model:
    """A copy of ``network`` computing at ``precision`` with the same (float32) weights.

    Returns ``network`` itself when it already runs at that precision.
    """
    policy_name(precision)
    if network_precision(network) == precision:
        return network
    with dtype_policy(precision):
        copy = network.__class__.from_config(network.get_config())
    require_precision(copy, precision, "rebuilt from its config")
    copy.set_weights(network.get_weights())
    return copy


def require_precision(network: keras.Model, precision: str, how: str) -> None:
    """Refuse ``network`` unless it computes at ``precision`` after being ``how`` ("rebuilt
    from its config", "loaded") under that precision's mixed policy."""
    if network_precision(network) != precision:
        # Plain functional models store each layer's dtype in their config, which wins
        # over the policy; this package's networks build their layers from arguments.
        raise PrecisionError(
            f"{network.__class__.__name__} does not follow the dtype policy when {how} "
            f"(its layers keep their saved dtypes); build it under "
            f"keras.mixed_precision.set_global_policy({policy_name(precision)!r}) instead.")
