"""Fake VGG19 weight files in the layout Keras downloads (no network: tests write them).

Keras's ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (the 2016 release
``keras.applications.VGG19(weights="imagenet")`` still downloads) is a legacy HDF5 weights
file: a ``layer_names`` attribute listing every layer (pools too), one group per layer whose
``weight_names`` attribute lists Keras 1's names, ``block1_conv1_W_1:0`` and
``block1_conv1_b_1:0``, each a dataset in that group. Keras reads it by position
(``model.load_weights``); the names are only labels.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

TOP_LAYERS = ("flatten", "fc1", "fc2", "predictions")


def write_download_layout(model, path: Path, top: bool = False) -> Path:
    """``model``'s weights (a Keras VGG19 without its top) as Keras's downloaded file holds
    them; ``top`` adds the with-top file's groups (tiny stand-ins: loading skips them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        names = [layer.name for layer in model.layers]
        file.attrs["backend"] = b"tensorflow"
        file.attrs["keras_version"] = b"1.1.0"
        for layer in model.layers:
            group = file.create_group(layer.name)
            weight_names = []
            for suffix, value in zip(("W", "b"), layer.get_weights(), strict=False):
                weight_names.append(f"{layer.name}_{suffix}_1:0")
                group.create_dataset(weight_names[-1], data=value)
            group.attrs["weight_names"] = np.array(weight_names, "S")  # as Keras wrote them
        if top:
            for name in TOP_LAYERS:
                weight_names = [] if name == "flatten" else [f"{name}_W_1:0", f"{name}_b_1:0"]
                group = file.create_group(name)
                group.attrs["weight_names"] = np.array(weight_names, "S")
                for weight in weight_names:
                    group.create_dataset(weight, data=np.zeros(2, np.float32))
            names += TOP_LAYERS
        file.attrs["layer_names"] = np.array(names, "S")
    return path


def write_random_download_file(path: Path, seed: int = 0) -> Path:
    """A VGG19 with random weights (biases too), written in the downloaded file's layout."""
    import keras

    model = keras.applications.VGG19(include_top=False, weights=None,
                                     input_shape=(None, None, 3))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.uniform(-0.5, 0.5, layer.bias.shape))
    return write_download_layout(model, path)
