"""VGG19 features for the perceptual loss, with weights from a local file.

No weights can be downloaded at training time, so the user points ``train.vgg_weights_path``
at one of:

- torchvision's ImageNet ``vgg19`` state_dict (``vgg19-dcbb9e9d.pth``, needs the
  ``[convert]`` extra to read): reproduces the reference exactly, which feeds its [-1, 1]
  images to the network without ImageNet normalization;
- Keras's ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``: used with that model's
  own preprocessing (RGB -> BGR on the 0..255 scale, minus the ImageNet channel means).

The feature network returns relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from spade_tf.errors import SpadeError

FEATURE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                  "block5_conv1")
# torchvision's vgg19.features indices of the 16 convs, in order.
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
KERAS_BGR_MEANS = (103.939, 116.779, 123.68)
MISSING_WEIGHTS = (
    "the VGG perceptual loss needs VGG19 ImageNet weights from a local file, and "
    "train.vgg_weights_path is not set. Download torchvision's vgg19 weights "
    "(vgg19-dcbb9e9d.pth; reproduces the reference) or Keras's "
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 on a machine with internet access, "
    "then pass --set train.vgg_weights_path=/path/to/file; or turn the term off with "
    "--set train.vgg_weight=0."
)


class VGGWeightsError(SpadeError, ValueError):
    """The VGG weights are missing or unreadable; the message says what to do."""


def _backbone() -> keras.Model:
    return keras.applications.VGG19(include_top=False, weights=None,
                                    input_shape=(None, None, 3))


def _feature_model(backbone: keras.Model) -> keras.Model:
    outputs = [backbone.get_layer(name).output for name in FEATURE_LAYERS]
    return keras.Model(backbone.input, outputs, name="vgg19_features")


def _load_torchvision(backbone: keras.Model, path: Path) -> None:
    from spade_tf.torch_state_dict import StateDictError, read_state_dict

    try:
        state = read_state_dict(path, role="VGG19")
    except StateDictError as error:
        raise VGGWeightsError(str(error)) from None
    convs = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    for layer, index in zip(convs, TORCHVISION_CONV_INDICES, strict=True):
        weight_key, bias_key = f"features.{index}.weight", f"features.{index}.bias"
        if weight_key not in state or bias_key not in state:
            raise VGGWeightsError(f"{path} is not a torchvision vgg19 state_dict: it has no "
                                  f"{weight_key!r}.")
        kernel = state[weight_key].transpose(2, 3, 1, 0)
        if kernel.shape != tuple(layer.kernel.shape):
            raise VGGWeightsError(f"{path}: {weight_key} has shape {state[weight_key].shape}, "
                                  "not VGG19's.")
        layer.kernel.assign(kernel)
        layer.bias.assign(state[bias_key])


class VGGFeatures:
    """Images in [-1, 1] -> the five VGG19 feature maps, under a chosen preprocessing.

    Args:
        model: a Keras model returning the five feature maps.
        preprocessing: ``"torchvision"`` (the reference: [-1, 1] fed as is) or
            ``"keras"`` (caffe-style BGR with mean subtraction on 0..255).
    """

    def __init__(self, model: keras.Model, preprocessing: str):
        if preprocessing not in ("torchvision", "keras"):
            raise ValueError(f"preprocessing={preprocessing!r}: expected 'torchvision' or "
                             "'keras'.")
        self.model = model
        self.model.trainable = False
        self.preprocessing = preprocessing

    def __call__(self, images) -> list:
        images = tf.cast(images, tf.float32)
        if self.preprocessing == "keras":
            pixels = (images + 1.0) * 127.5
            images = pixels[..., ::-1] - tf.constant(KERAS_BGR_MEANS, tf.float32)
        return self.model(images, training=False)


def load_vgg_features(path: str | os.PathLike | None) -> VGGFeatures:
    """VGG19 features with weights from ``path`` (.pth torchvision or .h5 Keras)."""
    if not path:
        raise VGGWeightsError(MISSING_WEIGHTS)
    path = Path(path)
    if not path.is_file():
        raise VGGWeightsError(f"VGG19 weights file {path} does not exist. " + MISSING_WEIGHTS)
    backbone = _backbone()
    if path.suffix in (".pth", ".pt"):
        _load_torchvision(backbone, path)
        return VGGFeatures(_feature_model(backbone), "torchvision")
    try:
        backbone.load_weights(str(path))
    except Exception as error:  # h5py and Keras raise many types for bad files
        raise VGGWeightsError(f"{path} is not a Keras VGG19 (notop) weights file: "
                              f"{type(error).__name__}: {error}") from None
    return VGGFeatures(_feature_model(backbone), "keras")


def random_vgg_features(seed: int = 0, preprocessing: str = "torchvision") -> VGGFeatures:
    """VGG19 with random weights from ``seed`` (tests and benchmarks only).

    Every kernel is drawn from a local generator (biases start at zero), so the global
    random state is left alone.
    """
    backbone = _backbone()
    rng = np.random.default_rng(seed)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.Conv2D):
            fan_in = float(np.prod(layer.kernel.shape[:-1]))
            layer.kernel.assign(rng.normal(0, (2 / fan_in) ** 0.5, layer.kernel.shape))
    return VGGFeatures(_feature_model(backbone), preprocessing)
