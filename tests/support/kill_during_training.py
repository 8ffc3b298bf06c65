"""Train the tiny config, averaging its generator, and SIGKILL this process right after
step KILL_AT (test helper; tests/spade_tf/training/conftest.py's averaged_run is the same
run uninterrupted).

    python kill_during_training.py DATA MODEL_DIR KILL_AT
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from spade_tf.config import load_config  # noqa: E402
from spade_tf.training import global_step, train  # noqa: E402
from support.training_runs import EMA_OVERRIDES, EMA_SEED, TRAIN_OVERRIDES  # noqa: E402

DATA, MODEL_DIR, KILL_AT = sys.argv[1], sys.argv[2], int(sys.argv[3])
OVERRIDES = [*TRAIN_OVERRIDES, *EMA_OVERRIDES]


class KillAt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if global_step(self.model) >= KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    demo_config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo.yaml")
    config = load_config(demo_config, OVERRIDES)
    keras.utils.set_random_seed(EMA_SEED)
    train(config, DATA, MODEL_DIR, verbose=0, extra_callbacks=[KillAt()])
