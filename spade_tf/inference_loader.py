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
norm); it is built with ``trainable=False``. ``load_for_inference(model_dir, "bfloat16")``
loads a model folder's networks folded, freeing each float32 network before its copy is
made; export (:mod:`spade_tf.export`), ``spade-eval generate`` and ``spade-synthesize`` load
their networks with it.
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Callable

import keras
import numpy as np

from spade_tf.compat import flatten_layers
from spade_tf.errors import SpadeError
from spade_tf.layers.spectral_norm import SpectralNormalization
from spade_tf.layout import WEIGHT_ROLES
from spade_tf.model_dir import ModelDir, choose_weights, load_model_dir
from spade_tf.precision import (
    building_under,
    check_precision,
    network_precision,
    resolve_precision,
    stored_policy,
)


class FoldingError(SpadeError, ValueError):
    """A network this module cannot fold (not one of this package's networks)."""


def folded_sources(network: keras.Model) -> dict:
    """Variable path in the folded copy -> its source: a variable of ``network``, or the
    spectral norm wrapper whose folded kernel it takes (:func:`folded_value` gives the
    value of either). The averaged generator (:mod:`spade_tf.training.ema`) pairs its
    weights with these."""
    sources = {variable.path: variable for variable in network.weights}
    for layer in flatten_layers(network):
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


def folded_value(source):
    """The value a source of :func:`folded_sources` gives the folded copy."""
    # Folded kernels are computed one at a time while the copy is filled, so folding holds
    # one beside the two networks, not a third copy of every weight.
    if isinstance(source, SpectralNormalization):
        return source.normalized_kernel(training=False)
    return source


def _unwrapped_builder(network: keras.Model, precision: str) -> Callable[[], keras.Model]:
    """A function that builds ``network`` again from its config, without spectral norm,
    with its weights stored in ``precision`` (fresh values); it does not hold ``network``."""
    policy = stored_policy(precision)
    if "use_spectral_norm" not in getattr(network, "config_keys", ()):
        raise FoldingError(
            f"{network.__class__.__name__} is not a spade_tf network; fold_for_inference "
            "folds the generator and encoder of spade_tf.models.")
    config = {**network.get_config(), "use_spectral_norm": False}
    network_class = network.__class__

    def build() -> keras.Model:
        with building_under(policy):
            return network_class.from_config(config)

    return build


def _fill(copy: keras.Model, name: str, values: dict, precision: str) -> keras.Model:
    """Assign ``values`` (path -> a source for :func:`folded_value`, or an array) to ``copy``."""
    missing = [v.path for v in copy.weights if v.path not in values]
    unused = sorted(set(values) - {v.path for v in copy.weights})
    if missing or unused:
        raise FoldingError(
            f"cannot fold {name}: its weights do not match its unwrapped copy "
            f"(missing {missing[:3]}, unused {unused[:3]}).")
    for variable in copy.weights:
        variable.assign(keras.ops.cast(folded_value(values[variable.path]), variable.dtype))
    copy.trainable = False
    if network_precision(copy) != precision:
        raise FoldingError(f"{name} does not compute in {precision} when rebuilt.")
    return copy


def fold_for_inference(network: keras.Model, precision: str = "float32") -> keras.Model:
    """A copy of ``network`` for inference at ``precision`` (see the module doc).

    ``network``: a generator or encoder of this package (built from its config with a
    ``use_spectral_norm`` option); ``precision``: "float32", "bfloat16" or "float16".
    """
    copy = _unwrapped_builder(network, precision)()
    return _fill(copy, network.name, folded_sources(network), precision)


def _staged_values(network: keras.Model) -> dict:
    """The folded float32 values of ``network``'s copy, as views of one host buffer: one
    large allocation goes back to the system when freed (many small ones may stay in the
    process's heap)."""
    sources = folded_sources(network)
    shapes = {path: tuple(source.layer.kernel.shape if isinstance(source, SpectralNormalization)
                          else source.shape) for path, source in sources.items()}
    buffer = np.empty(sum(math.prod(shape) for shape in shapes.values()), np.float32)
    staged, offset = {}, 0
    for path, source in sources.items():
        size = math.prod(shapes[path])
        staged[path] = buffer[offset:offset + size].reshape(shapes[path])
        staged[path][...] = keras.ops.convert_to_numpy(
            keras.ops.cast(folded_value(source), "float32"))
        offset += size
    return staged


def load_for_inference(model_dir: str | os.PathLike, precision: str | None = None,
                       checkpoint: str | int | None = None,
                       weights: str | None = None) -> ModelDir:
    """A model folder's generator (and encoder, when it has one) folded for inference
    at ``precision`` (default: its config's ``export.precision``).

    What ``fold_for_inference(load_model_dir(...).generator)`` gives, with less memory:
    each float32 network is freed before its copy is made, so the copy reuses its memory
    (TensorFlow keeps freed tensor memory for later tensors, not for the system).
    ``checkpoint``: as in :func:`~spade_tf.model_dir.load_model_dir`. ``weights``: "ema"
    (the averaged generator and encoder, ``generator_ema.keras``), "raw" (the trained
    ones) or None: the average where the folder (or the checkpoint) has one. The result's
    ``generator`` and ``encoder`` hold the chosen ones; its ``weights`` says which.
    """
    if precision is not None:
        check_precision(precision)  # an unknown name fails before the (slow) loading
    weights = choose_weights(model_dir, weights, checkpoint)
    generator_role, encoder_role = WEIGHT_ROLES[weights]
    both = load_model_dir(model_dir, networks=(generator_role, encoder_role),
                          checkpoint=checkpoint)
    loaded = ModelDir(both.config, getattr(both, generator_role),
                      encoder=getattr(both, encoder_role), weights=weights)
    del both
    precision = resolve_precision(precision, loaded.config)
    for role in ("generator", "encoder"):
        network = getattr(loaded, role)
        if network is None:
            continue
        name, build = network.name, _unwrapped_builder(network, precision)
        staged = _staged_values(network)
        setattr(loaded, role, None)
        del network
        gc.collect()
        setattr(loaded, role, _fill(build(), name, staged, precision))
        del staged
    return loaded
