"""The exponential moving average (EMA) of the generator's weights, and its batch norm.

The reference trains and ships the raw generator. NVlabs' imaginaire (its SPADE configs'
``model_average_config``) and OASIS keep beside it an average of its weights, updated after
every step, and evaluate and ship the average: it damps the step-to-step oscillation of
GAN training (Yazici et al., "The Unusual Effectiveness of Averaging in GAN Training",
ICLR 2019). :class:`GeneratorAverage` is that average (``train.ema_decay > 0``):

- what is averaged: every weight of the generator, and of the VAE encoder (trained by the
  same optimizer), batch-norm statistics included; a spectral-normalized kernel enters as
  ``kernel / sigma`` with sigma from its stored ``u`` and ``v`` (what the network computes
  at inference), so the averaged networks have no spectral norm (imaginaire's default);
- the recurrence, at update ``n`` (1, 2, ...; one per training step, after both the
  generator's and the discriminator's step): ``average = weights`` while ``n <=
  start_step`` (imaginaire's ``start_iteration``), then ``average = decay * average +
  (1 - decay) * weights``, computed as ``average + (1 - decay) * (weights - average)``
  (OASIS starts at once: ``start_step=0``);
- replicas: the update runs inside the train step, on every replica, from the same
  mirrored weights, and each replica writes its own copy of the average: all copies stay
  equal, as the synchronized batch norm's statistics do;
- checkpoints hold the averaged networks and the update count (``generator_ema``,
  ``encoder_ema``, ``ema_updates``), so a resumed run continues the same average.

Batch norm: the average of the running statistics is not the statistics of the averaged
network's activations. :func:`reestimate_batch_norm` sets them to the mean of the
statistics of N training batches run through the averaged generator (imaginaire: 30
batches, with batch norm's momentum 1 / (k + 1) at batch k; OASIS: 50 at momentum 0.1), in
training mode, so with the synchronized batch norm's global-batch statistics.
``spade-train`` does it at each epoch's end for the samples and ``generator_ema.keras``
(``train.ema_bn_batches``), and puts the average's own statistics back before the next
step: the checkpoints, and so a resumed run, hold the plain recurrence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from spade_tf.compat import flatten_layers
from spade_tf.inference_loader import folded_sources, folded_value
from spade_tf.layers.batch_norm import ParameterFreeBatchNorm


def folded_copy(network: keras.Model) -> keras.Model:
    """``network`` built again from its config without spectral norm, not trainable (fresh
    weights; :meth:`GeneratorAverage.reset` fills them). Under the current strategy scope
    and with ``network``'s dtype policy."""
    if "use_spectral_norm" not in getattr(network, "config_keys", ()):
        raise TypeError(f"{type(network).__name__} is not a spade_tf network; pass the "
                        "averaged copies to GeneratorAverage yourself (averaged=...).")
    copy = type(network).from_config({**network.get_config(), "use_spectral_norm": False})
    copy.trainable = False
    return copy


class GeneratorAverage:
    """The exponential moving average of ``networks``' weights (see the module doc).

    Args:
        networks: {role: network}, e.g. ``{"generator": g, "encoder": e}``.
        decay: the weight of the past, in [0, 1) (imaginaire and OASIS: 0.9999).
        start_step: updates up to this one copy the weights (imaginaire: 1000).
        averaged: {role: network} to hold the averages (default: :func:`folded_copy`);
            each variable's path must match one of :func:`folded_sources` of its network.

    Build it under the strategy scope of training. ``networks`` maps each role to its
    averaged network (``average.networks["generator"]``); ``updates`` counts the updates.
    """

    def __init__(self, networks: dict[str, keras.Model], decay: float = 0.9999,
                 start_step: int = 1000, averaged: dict[str, keras.Model] | None = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay={decay}: expected a number in [0, 1) (0.9999 in "
                             "imaginaire and OASIS).")
        if start_step < 0:
            raise ValueError(f"start_step={start_step}: expected 0 or a positive step.")
        self.decay, self.start_step = float(decay), int(start_step)
        averaged = averaged or {role: folded_copy(net) for role, net in networks.items()}
        self.networks = dict(averaged)
        self.sources = dict(networks)
        self._pairs = []
        for role, network in networks.items():
            sources = folded_sources(network)
            targets = {variable.path: variable for variable in averaged[role].weights}
            if set(targets) != set(sources):
                raise ValueError(
                    f"the averaged {role} does not match the {role} (missing "
                    f"{sorted(set(sources) - set(targets))[:3]}, extra "
                    f"{sorted(set(targets) - set(sources))[:3]}).")
            self._pairs += [(targets[path], source) for path, source in sources.items()]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")
        self.reset(0)

    def checkpoint_objects(self) -> dict:
        """What a ``tf.train.Checkpoint`` holds of the average, by key."""
        objects = {f"{role}_ema": network for role, network in self.networks.items()}
        return {**objects, "ema_updates": self.updates}

    def reset(self, updates: int = 0) -> None:
        """The average := the networks' weights now; the update count := ``updates``."""
        for target, source in self._pairs:
            target.assign(tf.cast(folded_value(source), target.dtype))
        self.updates.assign(updates)

    def update(self) -> None:
        """One update (in a train step: on each replica, into that replica's copy).

        Written ``average + (1 - decay) * (weights - average)``: an average equal to the
        weights stays exactly so. The variables are updated one after the other, so the
        update's temporaries never hold more than one variable's worth.
        """
        count = self.updates.assign_add(1)
        tf.cond(count > self.start_step, self._average, self._copy)

    def _average(self):
        done = []
        for target, source in self._pairs:
            with tf.control_dependencies(done):
                rate = tf.constant(1.0 - self.decay, target.dtype)
                current = tf.convert_to_tensor(target)
                value = tf.cast(folded_value(source), target.dtype)
                done = [target.assign(current + rate * (value - current))]
        return tf.constant(True)

    def _copy(self):
        done = []
        for target, source in self._pairs:
            with tf.control_dependencies(done):
                done = [target.assign(tf.cast(folded_value(source), target.dtype))]
        return tf.constant(False)


# -- batch norm -----------------------------------------------------------------------


def batch_norm_layers(network: keras.Model) -> list[ParameterFreeBatchNorm]:
    """The batch-norm layers of ``network`` (SPADE's parameter-free norms)."""
    return [layer for layer in flatten_layers(network)
            if isinstance(layer, ParameterFreeBatchNorm)]


def batch_norm_statistics(network: keras.Model) -> list[np.ndarray]:
    """Moving mean and variance of each batch-norm layer, in order (a snapshot)."""
    return [variable.numpy() for layer in batch_norm_layers(network)
            for variable in (layer.moving_mean, layer.moving_variance)]


def set_batch_norm_statistics(network: keras.Model, values: list[np.ndarray]) -> None:
    """Put back what :func:`batch_norm_statistics` returned (on every replica)."""
    variables = [variable for layer in batch_norm_layers(network)
                 for variable in (layer.moving_mean, layer.moving_variance)]
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def reestimation_step(network: keras.Model, inputs_of: Callable[[dict], dict],
                      strategy: tf.distribute.Strategy | None = None) -> Callable:
    """A function batch -> None that runs ``network`` in training mode on
    ``inputs_of(batch)`` on every replica of ``strategy`` (a distributed batch under one);
    for :func:`reestimate_batch_norm`, which calls it while the norms take each batch's
    statistics whole (traced then: keep it for the next re-estimation of ``network``)."""
    strategy = strategy or tf.distribute.get_strategy()

    def replica_step(batch):
        network(inputs_of(batch), training=True)

    @tf.function
    def step(batch):
        strategy.run(replica_step, args=(batch,))

    return step


def reestimate_batch_norm(network: keras.Model, batches: Iterable,
                          step: Callable) -> int:
    """Set ``network``'s batch-norm statistics to the mean, over ``batches``, of each
    batch's statistics (mean and unbiased variance, those of the global batch under
    synchronized batch norm): imaginaire's re-estimation. ``step``: a
    :func:`reestimation_step` of ``network``. Returns the batches used (0: nothing changed,
    e.g. a network without batch norm)."""
    layers = batch_norm_layers(network)
    if not layers:
        return 0
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    sums, count = None, 0
    try:
        for layer in layers:
            # Momentum 1: after a batch the moving statistics are exactly that batch's.
            layer.momentum, layer.trainable = 1.0, True
        for batch in batches:
            step(batch)
            values = [value.astype(np.float64) for value in batch_norm_statistics(network)]
            sums = values if sums is None else [a + b for a, b in zip(sums, values, strict=True)]
            count += 1
    finally:
        for layer, (momentum, trainable) in zip(layers, saved, strict=True):
            layer.momentum, layer.trainable = momentum, trainable
    if count:
        dtypes = [value.dtype for value in batch_norm_statistics(network)]
        set_batch_norm_statistics(network, [(total / count).astype(dtype)
                                            for total, dtype in zip(sums, dtypes, strict=True)])
    return count
