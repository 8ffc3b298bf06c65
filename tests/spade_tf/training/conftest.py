"""The training tests' data, and one run that averages its generator, recorded step by
step (tests/spade_tf/training/test_ema.py checks it; test_train.py's killed run resumes to
the same average)."""

import keras
import pytest
from support.synthetic_data import write_training_records
from support.training_runs import EMA_SEED, averaged_config

from spade_tf.inference_loader import folded_sources, folded_value


@pytest.fixture(scope="session")
def training_records(tmp_path_factory):
    """support.synthetic_data.write_training_records's TFRecords (read-only)."""
    return write_training_records(tmp_path_factory.mktemp("scenes"),
                                  tmp_path_factory.mktemp("records"))


class Recorder(keras.callbacks.Callback):
    """After every step: the generator's weights as the average takes them (spectral norm
    folded) and the averaged generator's."""

    def __init__(self):
        super().__init__()
        self.raw, self.averaged = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.raw.append({path: keras.ops.convert_to_numpy(folded_value(source)) for path, source in
                         folded_sources(self.model.generator).items()})
        self.averaged.append({variable.path: variable.numpy() for variable in
                              self.model.average.networks["generator"].weights})


@pytest.fixture(scope="session")
def averaged_run(training_records, tmp_path_factory):
    """averaged_config() trained uninterrupted from EMA_SEED, recorded: the train()
    summary with "model_dir", "records" and "recorder" (a Recorder) added. Read-only."""
    from spade_tf.training import train

    model_dir = tmp_path_factory.mktemp("averaged") / "run"
    recorder = Recorder()
    keras.utils.set_random_seed(EMA_SEED)
    summary = train(averaged_config(), training_records, model_dir, verbose=0,
                    extra_callbacks=[recorder])
    return {**summary, "model_dir": model_dir, "records": training_records,
            "recorder": recorder}
