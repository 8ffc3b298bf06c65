"""Model folders of randomly initialised networks, the starting point of many tests."""

from __future__ import annotations

from pathlib import Path

import keras

from spade_tf.config import Config, DataConfig, ModelConfig
from spade_tf.model_dir import ModelDir, save_model_dir
from spade_tf.models import build_encoder, build_generator


def save_random_model(folder: Path, model: ModelConfig, seed: int,
                      data: DataConfig | None = None) -> Path:
    """``folder`` as a model folder: a generator (and an encoder for VAE models) with
    random weights drawn from ``seed``, so images are not constant and runs repeat."""
    keras.utils.set_random_seed(seed)
    config = Config(model=model) if data is None else Config(model=model, data=data)
    generator = build_generator(model)
    encoder = build_encoder(model) if model.use_vae else None
    return save_model_dir(folder, ModelDir(config, generator, encoder=encoder))
