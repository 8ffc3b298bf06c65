"""Networks prepared for inference: spectral norm folded, weights in the compute type.

``fold_for_inference(generator, "bfloat16")`` returns a copy of a generator or encoder
that computes what ``network(x, training=False)`` computes, with less work per call:

- spectral normalization is folded into plain kernels. At inference sigma comes from
  the stored ``u`` and ``v`` without iterating (PyTorch's semantics), so it is a
  constant: ``kernel / sigma`` is computed once here, not on every call, and the copy
  has neither ``u`` nor ``v``;
- the weights are stored in the compute type (``bfloat16``, ``float16``) instead of
  float32 copies cast on every call: half the memory and half the size of an export.
  Batch-norm statistics and the output layer stay float32, as under the mixed policies.

The copy is for inference only (training it would train a network without spectral
norm); it is built with ``trainable=False``. Export (:mod:`spade_tf.export`), ``spade-eval
generate`` and ``spade-synthesize`` run their networks through it.
"""

from __future__ import annotations

import keras

from spade_tf.errors import SpadeError
from spade_tf.layers.spectral_norm import SpectralNormalization
from spade_tf.precision import network_precision, policy_name


class FoldingError(SpadeError, ValueError):
    """A network this module cannot fold (not one of this package's networks)."""


def _folded_sources(network: keras.Model) -> dict:
    """Variable path in the folded copy -> its source: a variable of ``network``, or the
    spectral norm wrapper whose folded kernel it takes (see ``_value``)."""
    sources = {variable.path: variable for variable in network.weights}
    for layer in network._flatten_layers():
        if not isinstance(layer, SpectralNormalization):
            continue
        for variable in (layer.u, layer.v, *layer.layer.weights):
            sources.pop(variable.path)
        # The wrapper and its layer share a name: "block/conv_0/conv_0/kernel" is
        # "block/conv_0/kernel" in the unwrapped copy.
        for variable in layer.layer.weights:
            parts = variable.path.split("/")
            sources["/".join(parts[:-2] + parts[-1:])] = (
                layer if variable is layer.layer.kernel else variable)
    return sources


def _value(source):
    # Folded kernels are computed one at a time while the copy is filled, so folding holds
    # one beside the two networks, not a third copy of every weight.
    if isinstance(source, SpectralNormalization):
        return source.normalized_kernel(training=False)
    return source


def fold_for_inference(network: keras.Model, precision: str = "float32") -> keras.Model:
    """A copy of ``network`` for inference at ``precision`` (see the module doc).

    ``network``: a generator or encoder of this package (built from its config with a
    ``use_spectral_norm`` option); ``precision``: "float32", "bfloat16" or "float16".
    """
    policy_name(precision)
    config = network.get_config()
    if "use_spectral_norm" not in getattr(network, "config_keys", ()):
        raise FoldingError(
            f"{network.__class__.__name__} is not a spade_tf network; fold_for_inference "
            "folds the generator and encoder of spade_tf.models.")
    config["use_spectral_norm"] = False
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        copy = network.__class__.from_config(config)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    sources = _folded_sources(network)
    missing = [v.path for v in copy.weights if v.path not in sources]
    unused = sorted(set(sources) - {v.path for v in copy.weights})
    if missing or unused:
        raise FoldingError(
            f"cannot fold {network.name}: its weights do not match its unwrapped copy "
            f"(missing {missing[:3]}, unused {unused[:3]}).")
    for variable in copy.weights:
        variable.assign(keras.ops.cast(_value(sources[variable.path]), variable.dtype))
    copy.trainable = False
    if network_precision(copy) != precision:
        raise FoldingError(f"{network.name} does not compute in {precision} when rebuilt.")
    return copy
