import numpy as np
import pytest
import tensorflow as tf

from spade_tf.config import Config, ModelConfig
from spade_tf.model_dir import (
    ModelDir,
    ModelDirError,
    atomic_directory,
    load_model_dir,
    save_model_dir,
)
from spade_tf.models import build_encoder, build_generator

TINY = ModelConfig(num_classes=3, crop_size=64, base_filters=4, spade_hidden_filters=8,
                   use_vae=True, latent_dim=8, encoder_filters=4, encoder_input_size=128)


def test_round_trip_keeps_config_and_outputs(tmp_path):
    config = Config(model=TINY)
    generator, encoder = build_generator(TINY), build_encoder(TINY)
    save_model_dir(tmp_path / "model", ModelDir(config, generator, encoder=encoder))
    loaded = load_model_dir(tmp_path / "model")
    assert loaded.config == config and loaded.discriminator is None
    inputs = {"semantic": tf.one_hot(tf.zeros((1, 64, 64), tf.int32), 3),
              "latent": tf.random.normal((1, 8))}
    np.testing.assert_array_equal(loaded.generator(inputs).numpy(), generator(inputs).numpy())
    image = tf.random.normal((1, 64, 64, 3))
    np.testing.assert_array_equal(loaded.encoder(image)["mean"].numpy(),
                                  encoder(image)["mean"].numpy())


def test_failure_inside_leaves_nothing_and_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "half.keras").write_text("partial")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []

    target.mkdir()
    (target / "config.yaml").write_text("old")
    with pytest.raises(ModelDirError, match="already exists and is not empty"):
        with atomic_directory(target):
            pass
    with pytest.raises(RuntimeError), atomic_directory(target, overwrite=True) as staging:
        raise RuntimeError("interrupted")
    assert (target / "config.yaml").read_text() == "old"
    with atomic_directory(target, overwrite=True) as staging:
        (staging / "config.yaml").write_text("new")
    assert (target / "config.yaml").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelDirError, match="is not a spade-tf model folder"):
        load_model_dir(tmp_path)
