"""Model folders of randomly initialised networks, the starting point of many tests."""

from __future__ import annotations

from collections.abc import Callable
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


def calibrated_generator(model: ModelConfig, inputs_of: Callable[[int], dict],
                         seed: int = 3, passes: int = 15) -> keras.Model:
    """A generator whose batch-norm statistics describe its activations.

    Untrained networks keep running statistics of mean 0 / variance 1, under which the
    residual stack grows activations to ~1e16 and tanh saturates: a precision comparison
    on those is meaningless. Training-mode passes over ``inputs_of(step)`` (the
    generator's inputs) set the statistics as training would, and the output convolution
    is scaled so images span
    [-1, 1] as a trained one's do (its 0.02-gain initialisation leaves them within +-0.01).
    """
    keras.utils.set_random_seed(seed)
    generator = build_generator(model)
    for step in range(passes):
        inputs = inputs_of(step)
        generator(inputs, training=True)
    spread = generator(inputs, training=False).numpy().std()
    kernel = generator.get_layer("conv_img").kernel
    kernel.assign(kernel * (0.5 / spread))
    return generator
