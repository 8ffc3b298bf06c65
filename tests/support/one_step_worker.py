"""One GauGAN training step under a chosen strategy, for the equivalence tests.

    python one_step_worker.py MODE WORKDIR [TASK_INDEX]

MODE is ``single`` (default strategy), ``mirrored`` (2 logical CPU devices) or
``multi_worker`` (TF_CONFIG from the environment). Reads ``WORKDIR/initial.npz`` (weights
of G and D) and ``WORKDIR/batch.npz`` (one global batch), runs one ``fit`` step with a
global batch of 4, re-estimates the averaged generator's batch norm on the batch, and writes
``WORKDIR/after_<MODE>.npz`` (from the chief; the other worker ``after_<MODE>_1.npz``): G,
D and the averaged G. Under ``mirrored`` it exits with 3 if the replicas' copies of the
average differ.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

MODE, WORKDIR = sys.argv[1], sys.argv[2]
# float64 makes the comparison exact up to rounding (float32 gradients through SPADE's
# batch statistics are only good to ~1e-3 relative whatever the batch split).
keras.config.set_floatx(os.environ.get("SPADE_TF_FLOATX", "float32"))
if MODE == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from spade_tf.config import Config, ModelConfig, TrainConfig  # noqa: E402
from spade_tf.training import build_trainer  # noqa: E402
from spade_tf.training.ema import reestimate_batch_norm, reestimation_step  # noqa: E402
from spade_tf.training.strategy import is_chief  # noqa: E402

GLOBAL_BATCH = 4
CONFIG = Config(
    model=ModelConfig(num_classes=4, use_instance_edges=True, crop_size=64, base_filters=4,
                      spade_hidden_filters=8, disc_filters=8, disc_layers=3),
    # The average from the first update on (0.5 initial + 0.5 after the step).
    train=TrainConfig(batch_size=GLOBAL_BATCH, vgg_weight=0.0, ema_decay=0.5, ema_start_step=0),
)


def make_strategy():
    if MODE == "single":
        return tf.distribute.get_strategy()
    if MODE == "mirrored":
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return tf.distribute.MultiWorkerMirroredStrategy()


def weights(trainer) -> dict:
    values = {}
    for network in (trainer.generator, trainer.discriminator):
        for variable in network.weights:
            values[f"{network.name}/{variable.path}"] = np.asarray(variable.numpy())
    return values


def averaged_weights(trainer, strategy) -> dict:
    """The averaged generator's weights; every replica's copy must be the same."""
    values = {}
    for variable in trainer.average.networks["generator"].weights:
        copies = [np.asarray(value) for value in
                  strategy.experimental_local_results(variable.value)]
        if any(not np.array_equal(copy, copies[0]) for copy in copies[1:]):
            sys.exit(3)
        values[f"generator_ema/{variable.path}"] = copies[0]
    return values


def main() -> None:
    strategy = make_strategy()
    batch = dict(np.load(os.path.join(WORKDIR, "batch.npz")))
    with strategy.scope():
        trainer = build_trainer(CONFIG)
        # Plain SGD: Adam's first step divides by |gradient|, turning the rounding noise
        # of parameters whose true gradient is 0 (e.g. the fc bias ahead of batch norm)
        # into learning-rate-sized updates that differ with the batch split.
        trainer.compile(g_optimizer=keras.optimizers.SGD(0.01),
                        d_optimizer=keras.optimizers.SGD(0.01))
    initial_path = os.path.join(WORKDIR, "initial.npz")
    if MODE == "single" and not os.path.exists(initial_path):
        np.savez(initial_path, **weights(trainer))
    initial = np.load(initial_path)
    for network in (trainer.generator, trainer.discriminator):
        for variable in network.weights:
            variable.assign(initial[f"{network.name}/{variable.path}"])
    trainer.average.reset(0)  # from these weights

    def input_fn(context):
        dataset = tf.data.Dataset.from_tensor_slices(batch)
        if context.num_input_pipelines > 1:
            dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        return dataset.batch(context.get_per_replica_batch_size(GLOBAL_BATCH))

    dataset = strategy.distribute_datasets_from_function(input_fn)
    trainer.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    averaged = trainer.average.networks["generator"]
    step = reestimation_step(averaged, lambda data: {"semantic": trainer.semantic(data)},
                             strategy)
    assert reestimate_batch_norm(averaged, dataset, step) == 1
    values = {**weights(trainer), **averaged_weights(trainer, strategy)}
    name = f"after_{MODE}.npz" if is_chief(strategy) else f"after_{MODE}_1.npz"
    np.savez(os.path.join(WORKDIR, name), **values)


if __name__ == "__main__":
    main()
