"""Settings of the short training runs the training tests share (tests and the scripts they
start alike)."""

from support import ROOT

# On configs/demo.yaml with support.synthetic_data.write_training_records: 12 scenes in
# batches of 4, so 3 steps per epoch, 6 in all; a checkpoint every 2 steps.
TRAIN_OVERRIDES = ["train.batch_size=4", "train.epochs=2", "train.checkpoint_every_steps=2"]
# The generator average, strong enough to see in a few steps: updates 1 and 2 copy the
# weights, each later one averages half and half; batch norm re-estimated over 2 batches.
EMA_OVERRIDES = ["train.ema_decay=0.5", "train.ema_start_step=2", "train.ema_bn_batches=2"]
# keras.utils.set_random_seed before an averaging run: the uninterrupted run and the killed
# one (another process) start from the same weights.
EMA_SEED = 7


def averaged_config(*extra):
    """configs/demo.yaml with TRAIN_OVERRIDES, EMA_OVERRIDES and ``extra``."""
    from spade_tf.config import load_config

    return load_config(ROOT / "configs" / "demo.yaml", [*TRAIN_OVERRIDES, *EMA_OVERRIDES, *extra])
