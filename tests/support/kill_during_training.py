"""Train the tiny config and SIGKILL this process right after step KILL_AT (test helper).

    python kill_during_training.py DATA MODEL_DIR KILL_AT
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from spade_tf.config import load_config  # noqa: E402
from spade_tf.training import global_step, train  # noqa: E402

DATA, MODEL_DIR, KILL_AT = sys.argv[1], sys.argv[2], int(sys.argv[3])
OVERRIDES = ["train.batch_size=4", "train.epochs=2", "train.checkpoint_every_steps=2"]


class KillAt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if global_step(self.model) >= KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    demo_config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo.yaml")
    config = load_config(demo_config, OVERRIDES)
    train(config, DATA, MODEL_DIR, verbose=0, extra_callbacks=[KillAt()])
