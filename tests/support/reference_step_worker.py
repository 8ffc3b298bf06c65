"""GauGAN training steps on converted reference weights, for the training-parity tests.

    python reference_step_worker.py WORKDIR

runs every case of ``WORKDIR/cases.json`` under a ``MirroredStrategy`` over 2 logical
CPUs and writes ``WORKDIR/<name>.npz`` (see :func:`run_case`); the tests call
:func:`run_case` in their own process for one device.

A case: ``model`` (``ModelConfig`` fields), ``weights`` ({role: reference state dict
file} for the generator, discriminator and, for VAE, encoder; put into the Keras networks
by the converter's key table), ``dtype`` ("float32" or "float64": the networks' dtype
policy), ``batch`` (npz: label, instance, image; the global batch), ``noise`` (npz
``noise`` [steps, 2, B, latent]: the reparameterisation draws of each step's G and D
passes), ``vgg`` (a torchvision-layout VGG19 state dict, or "" for no VGG term),
``kl_reduction``, ``optimizer`` ("sgd" or "torch_adam"), ``g_lr``, ``d_lr``, ``steps``.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __name__ == "__main__":
    import tensorflow as tf

    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from spade_tf.config import ModelConfig  # noqa: E402
from spade_tf.convert.checkpoint import load_state_dict  # noqa: E402
from spade_tf.convert.mapping import (  # noqa: E402
    discriminator_targets,
    encoder_targets,
    generator_targets,
)
from spade_tf.models import (  # noqa: E402
    build_discriminator,
    build_encoder,
    build_generator,
    build_semantic_input,
)
from spade_tf.training import GauGAN, load_vgg_features  # noqa: E402
from spade_tf.training.optimizers import TorchAdam  # noqa: E402

TARGETS = {"generator": generator_targets, "discriminator": discriminator_targets,
           "encoder": encoder_targets}
BUILDERS = {"generator": build_generator, "discriminator": build_discriminator,
            "encoder": build_encoder}


def build_networks(model: ModelConfig, weights: dict) -> dict:
    """The Keras networks with the reference state dicts' values (converter's key table)."""
    networks = {}
    for role, path in weights.items():
        network = BUILDERS[role](model)
        state = load_state_dict(path, role)
        targets = TARGETS[role](network)
        assert {t.key for t in targets} == set(state), role  # every key, nothing else
        for target in targets:
            if target.variable is not None:
                target.variable.assign(
                    target.to_keras(state[target.key]).astype(target.variable.dtype))
        networks[role] = network
    return networks


def to_torch_layout(layout: str, value: np.ndarray) -> np.ndarray:
    """The inverse of the converter's ``Target.to_keras``."""
    if layout == "conv":
        return value.transpose(3, 2, 0, 1)
    if layout == "dense":
        return value.transpose(1, 0)
    return value


def snapshot(trainer: GauGAN) -> dict[str, np.ndarray]:
    """Every converted variable, in the reference's layout, keyed ``role/state_dict key``."""
    values = {}
    for role, targets_of in TARGETS.items():
        network = getattr(trainer, role)
        if network is None:
            continue
        for target in targets_of(network):
            if target.variable is not None:
                values[f"{role}/{target.key}"] = to_torch_layout(
                    target.layout, np.asarray(target.variable.numpy()))
    return values


class FixedNoise:
    """Stands in for ``tf.random.normal`` in GauGAN's steps: each replica's first call in a
    step (the G pass) reads ``noise[0]``, its second (the D pass) ``noise[1]``, both at this
    replica's rows of the global batch. ``noise`` is a variable [2, B, latent]."""

    def __init__(self, noise: tf.Variable, replicas: int):
        self.noise, self.replicas = noise, replicas
        self.calls: dict[int, int] = {}

    def __call__(self, shape, *args, **kwargs):
        context = tf.distribute.get_replica_context()
        replica = 0
        if context is not None:
            replica = int(tf.get_static_value(context.replica_id_in_sync_group))
        index = self.calls.get(replica, 0)
        self.calls[replica] = index + 1
        share = self.noise.shape[1] // self.replicas
        return tf.identity(self.noise[index % 2, replica * share:(replica + 1) * share])


def _optimizer(name: str, rate: float) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(rate)
    if name == "torch_adam":
        return TorchAdam(learning_rate=rate, beta_1=0.0, beta_2=0.9)
    raise ValueError(name)


def run_case(case: dict, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Runs the case's steps; returns ``{"losses": [per step {name: global-batch mean}],
    "before": snapshot, "after": snapshot}``."""
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    batch = dict(np.load(case["batch"]))
    noise_steps = np.load(case["noise"])["noise"] if case.get("noise") else None
    model = ModelConfig(**case["model"])
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(case.get("dtype", "float32"))
    try:
        with strategy.scope():
            networks = build_networks(model, case["weights"])
            vgg = load_vgg_features(case["vgg"]) if case.get("vgg") else None
            trainer = GauGAN(networks["generator"], networks["discriminator"],
                             build_semantic_input(model), encoder=networks.get("encoder"),
                             vgg_features=vgg, vgg_weight=10.0 if vgg else 0.0,
                             kl_reduction=case.get("kl_reduction", "global_mean"))
            trainer.compile(g_optimizer=_optimizer(case["optimizer"], case["g_lr"]),
                            d_optimizer=_optimizer(case["optimizer"], case["d_lr"]))
    finally:
        keras.config.set_dtype_policy(policy)
    # The per-example loss terms of the step, instead of the trackers' running means.
    trainer._track = lambda terms: dict(terms)
    size = len(batch["image"])
    share = size // replicas
    noise = tf.Variable(np.zeros((2, size, model.latent_dim), np.float32)
                        if noise_steps is None else noise_steps[0])

    def replica_rows(context):
        rows = slice(context.replica_id_in_sync_group * share,
                     (context.replica_id_in_sync_group + 1) * share)
        return {key: tf.constant(value[rows]) for key, value in batch.items()}

    # Eagerly (MirroredStrategy runs each replica in a thread, all-reducing as in a
    # graph): tracing the tiny model's 2-replica step takes ~2 minutes on 2 CPUs, running
    # it eagerly a few seconds. tests/spade_tf/training/test_equivalence.py covers fit's
    # compiled step on 2 replicas.
    data = strategy.experimental_distribute_values_from_function(replica_rows)

    def step(data):
        return strategy.run(trainer.train_step, args=(data,))

    before = snapshot(trainer)
    losses = []
    original_normal = tf.random.normal
    fixed_noise = tf.random.normal = FixedNoise(noise, replicas)
    try:
        for index in range(case["steps"]):
            if noise_steps is not None:
                noise.assign(noise_steps[index])
            terms = step(data)
            losses.append({
                name: float(np.mean(np.concatenate(
                    [np.atleast_1d(np.asarray(t)) for t in
                     strategy.experimental_local_results(value)])))
                for name, value in terms.items()})
    finally:
        tf.random.normal = original_normal
    if model.use_vae:  # else the comparison would fail on noise, not on a difference
        assert sum(fixed_noise.calls.values()) == 2 * replicas * case["steps"], (
            "GauGAN no longer draws its reparameterisation noise with tf.random.normal "
            "(one G and one D pass per step): update FixedNoise")
    return {"losses": losses, "before": before, "after": snapshot(trainer)}


def save_result(result: dict, path) -> None:
    arrays = {f"before/{k}": v for k, v in result["before"].items()}
    arrays.update({f"after/{k}": v for k, v in result["after"].items()})
    arrays["losses"] = np.asarray(json.dumps(result["losses"]))
    np.savez(path, **arrays)


def load_result(path) -> dict:
    stored = np.load(path)
    result = {"before": {}, "after": {}, "losses": json.loads(str(stored["losses"]))}
    for key in stored.files:
        part, _, name = key.partition("/")
        if part in ("before", "after"):
            result[part][name] = stored[key]
    return result


def main() -> None:
    workdir = sys.argv[1]
    with open(os.path.join(workdir, "cases.json")) as file:
        cases = json.load(file)
    # ReductionToOneDevice: the default (collective) all-reduce packs all gradients into one
    # tensor and fails on mixed dtypes, which float64 runs have (the encoder's mean and
    # log-variance layers are float32 by design).
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    for name, case in cases.items():
        save_result(run_case(case, strategy), os.path.join(workdir, f"{name}.npz"))


if __name__ == "__main__":
    main()
