"""Inference at reduced precision: the one path from a precision word to a network.

The words are ``float32``, ``bfloat16`` and ``float16`` (:data:`spade_tf.config.PRECISIONS`),
the same for ``spade-export``, ``spade-synthesize --model-dir`` and ``spade-eval generate``,
each defaulting to the model config's ``export.precision``. A command resolves the word
once (:func:`resolve_precision`) and passes it down as an argument; each word names two
Keras dtype policies, used for two different networks:

- :func:`stored_policy` ("bfloat16"): what inference runs. The folded networks of
  :mod:`spade_tf.inference_loader` store their weights in the compute type (half the
  memory) and compute in it; batch-norm statistics and the output layer stay float32.
- :func:`mixed_policy` ("mixed_bfloat16"): Keras's mixed policy. Variables stay float32
  (the trained weights exactly) and are cast on every call: what :func:`with_precision`
  and ``load_model_dir(..., precision=...)`` build, for comparisons and benchmarks.

Networks are built under a policy by :func:`rebuild` and :func:`building_under`, the one
place that sets Keras's global policy (and restores it). ``bfloat16`` runs on CPUs with
bf16 units (AVX512-BF16, AMX) and recent GPUs; ``float16`` is meant for GPUs: on a CPU it
is emulated and slow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

from spade_tf.compat import flatten_layers
from spade_tf.config import PRECISIONS, Config
from spade_tf.errors import SpadeError


class PrecisionError(SpadeError, ValueError):
    """An unknown precision name."""


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`~spade_tf.config.PRECISIONS`, else an error."""
    if precision not in PRECISIONS:
        raise PrecisionError(
            f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    return precision


def resolve_precision(requested: str | None, config: Config) -> str:
    """The precision a command runs at: ``requested``, else the config's
    ``export.precision`` (the default of every inference command)."""
    return check_precision(requested if requested is not None else config.export.precision)


def stored_policy(precision: str) -> str:
    """Keras's policy for weights stored and computed in ``precision`` ("bfloat16")."""
    return check_precision(precision)


def mixed_policy(precision: str) -> str:
    """Keras's mixed policy for ``precision``: float32 variables, computed in it
    ("bfloat16" -> "mixed_bfloat16"; float32 has no mixed form)."""
    check_precision(precision)
    return precision if precision == "float32" else f"mixed_{precision}"


@contextlib.contextmanager
def building_under(policy: str) -> Iterator[None]:
    """Build layers under the Keras dtype ``policy`` inside the block; the previous global
    policy comes back after it, also on an error."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def rebuild(network: keras.Model, policy: str, **config_changes) -> keras.Model:
    """A new, unbuilt-weights copy of one of this package's networks, built from its config
    (with ``config_changes``) under ``policy``."""
    config = {**network.get_config(), **config_changes}
    with building_under(policy):
        return network.__class__.from_config(config)


def network_precision(network: keras.Model) -> str:
    """The precision word a network computes in (from its convolutions' dtype policies)."""
    compute = {layer.dtype_policy.compute_dtype for layer in flatten_layers(network)
               if isinstance(layer, keras.layers.Conv2D)}
    for precision in ("bfloat16", "float16"):
        if precision in compute:
            return precision
    return "float32"


def with_precision(network: keras.Model, precision: str) -> keras.Model:
    """A copy of ``network`` computing at ``precision`` under the mixed policy, with the
    same (float32) weights; ``network`` itself when it already runs at that precision."""
    policy = mixed_policy(precision)
    if network_precision(network) == precision:
        return network
    copy = rebuild(network, policy)
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
            f"keras.mixed_precision.set_global_policy({mixed_policy(precision)!r}) instead.")
