"""Where training runs: choosing and creating the ``tf.distribute`` strategy.

``choose_strategy`` picks MultiWorkerMirrored, Mirrored (over GPUs or logical CPUs) or the
default strategy; ``check_batch_split`` refuses a global batch the replicas cannot share;
``is_chief`` says which process writes the shared outputs.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from spade_tf.config import STRATEGIES, ConfigError
from spade_tf.training.errors import TrainingError


def split_cpu(replicas: int) -> None:
    """Make ``replicas`` logical CPU devices (before TensorFlow initializes devices)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError as error:
        raise TrainingError(f"cannot split the CPU into {replicas} devices once TensorFlow "
                            f"has started ({error}); do it first thing in the process.") from None


def _divisors(number: int) -> list[int]:
    return [d for d in range(1, number + 1) if number % d == 0]


def _spoken_list(values: list) -> str:
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def check_batch_split(batch_size: int, replicas: int, devices: str = "replicas") -> None:
    """Refuse a global batch that ``replicas`` devices cannot share evenly.

    ``devices`` names them in the user's terms (``"--cpu-replicas 3"``, ``"the 3 GPUs"``).
    """
    if replicas < 1 or batch_size % replicas == 0:
        return
    divisors = _divisors(batch_size)
    if len(divisors) > 6:  # the small ones and the batch itself say enough
        divisors = [*divisors[:5], batch_size]
    multiples = [replicas * k for k in range(max(1, batch_size // replicas),
                                             max(1, batch_size // replicas) + 3)]
    raise ConfigError(
        f"{devices} cannot share the global batch train.batch_size={batch_size} evenly "
        f"(every replica takes the same share): use {_spoken_list(divisors)} replicas, or a "
        f"train.batch_size that {replicas} divides ({', '.join(map(str, multiples))} ...)."
    )


def choose_strategy(name: str = "auto", cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """``auto``: MultiWorker when TF_CONFIG names a cluster, Mirrored over several GPUs
    (or over ``cpu_replicas`` logical CPUs), else the default (one device)."""
    if name not in STRATEGIES:
        raise TrainingError(f"strategy {name!r} is unknown: expected one of {list(STRATEGIES)}.")
    if name == "multi_worker" or (name == "auto" and _tf_config_cluster()):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if cpu_replicas > 1:
        split_cpu(cpu_replicas)
        devices = [f"/cpu:{i}" for i in range(cpu_replicas)]
        return tf.distribute.MirroredStrategy(devices)
    gpus = tf.config.list_physical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _tf_config_cluster() -> bool:
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return len(tf_config.get("cluster", {}).get("worker", [])) > 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the shared outputs (checkpoints, logs, models)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker" and resolver.task_id == 0)

