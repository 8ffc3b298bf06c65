"""VGG19 features for the perceptual loss, with weights from a local file.

No weights can be downloaded at training time, so the user points ``train.vgg_weights_path``
at one of:

- torchvision's ImageNet ``vgg19`` state_dict (``vgg19-dcbb9e9d.pth``, needs the
  ``[convert]`` extra to read; usually in ``~/.cache/torch/hub/checkpoints/``): reproduces
  the reference exactly, which feeds its [-1, 1] images to the network without ImageNet
  normalization;
- Keras's ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (what
  ``keras.applications.VGG19(weights="imagenet")`` downloads, as keras-io's GauGAN does;
  usually in ``~/.keras/models/``; the with-top file works too): a different network
  (Caffe's weights), used with its own preprocessing (RGB -> BGR on the 0..255 scale,
  minus the ImageNet channel means), so its loss is not the reference's.
  A Keras 3 ``save_weights`` file (``.weights.h5``) of ``VGG19(include_top=False)`` works too.

The feature network returns relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
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
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
KERAS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_TOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels.h5"  # include_top=True's


def usual_locations() -> list[Path]:
    """Where torchvision and Keras keep the files they download (TORCH_HOME, KERAS_HOME)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    keras_home = Path(os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"))
    return [Path(torch_home) / "hub" / "checkpoints" / TORCHVISION_FILE,
            keras_home / "models" / KERAS_FILE, keras_home / "models" / KERAS_TOP_FILE,
            Path("/tmp/.keras/models") / KERAS_FILE]  # Keras's cache when ~ is read-only


def how_to_get_weights() -> str:
    """Which files work, where they usually are, and any found on this machine."""
    found = [str(path) for path in usual_locations() if path.is_file()]
    here = f"This machine has {' and '.join(found)}. " if found else ""
    return (
        f"{here}Two files work: torchvision's {TORCHVISION_FILE} reproduces the reference "
        f"(usually in ~/.cache/torch/hub/checkpoints/ once torchvision.models.vgg19("
        f'weights="IMAGENET1K_V1") has run; reading it needs pip install \'spade-tf[convert]\'); '
        f"Keras's {KERAS_FILE} (usually in ~/.keras/models/ once keras.applications.VGG19("
        'weights="imagenet", include_top=False) has run) also works but does not reproduce '
        "it (other weights, fed caffe-style BGR inputs as Keras preprocesses them). Download "
        "one on a machine with internet access if needed, then pass --set "
        "train.vgg_weights_path=/path/to/file; or turn the term off with --set "
        "train.vgg_weight=0.")


class VGGWeightsError(SpadeError, ValueError):
    """The VGG weights are missing or unreadable; the message says what to do."""


def _backbone() -> keras.Model:
    return keras.applications.VGG19(include_top=False, weights=None,
                                    input_shape=(None, None, 3))


def _unseeded_copy(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A new layer like ``layer`` whose weights start at zero: copying draws no random
    numbers, so the networks built after VGG get the same initial weights as before."""
    config = layer.get_config()
    if isinstance(layer, keras.layers.Conv2D):
        config.update(kernel_initializer="zeros", bias_initializer="zeros")
    return type(layer).from_config(config)


def _feature_model(fill: Callable[[keras.Model], None]) -> keras.Model:
    """The five maps' network: VGG19 built, given its weights by ``fill``, then copied
    with only the layers the maps need.

    Keras links each layer to the layers it feeds, so a model over the backbone's own
    layers would keep block5_conv2 ... block5_conv4 (7.1M weights that no map needs, 27
    MiB) alive as long as it lives; the reference's VGG19 holds up to relu5_1 only.
    """
    backbone = _backbone()
    fill(backbone)
    outputs = [backbone.get_layer(name).output for name in FEATURE_LAYERS]
    over_backbone = keras.Model(backbone.input, outputs, name="vgg19_features")
    features = keras.models.clone_model(over_backbone, clone_function=_unseeded_copy)
    features.set_weights(over_backbone.get_weights())
    del backbone, outputs, over_backbone
    gc.collect()  # the backbone's layers link to each other: only the collector frees them
    return features


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


def _load_keras(backbone: keras.Model, path: Path) -> None:
    """Keras's downloaded file (the legacy HDF5 layout: a group per layer), by layer name so
    the with-top file loads too; or a Keras 3 ``.weights.h5`` file."""
    import h5py

    not_keras = f"{path} is not a Keras VGG19 weights file ({KERAS_FILE})"
    try:
        if not path.name.endswith(".weights.h5"):
            with h5py.File(path, "r") as file:
                stored = {name.decode() if isinstance(name, bytes) else name
                          for name in file.attrs.get("layer_names", [])}
            convs = [layer.name for layer in backbone.layers
                     if isinstance(layer, keras.layers.Conv2D)]
            missing = [name for name in convs if name not in stored]
            if missing:  # by name, a missing layer would silently keep random weights
                raise VGGWeightsError(f"{not_keras}: it has no layer {missing[0]!r}.")
            backbone.load_weights(str(path), by_name=True)
        else:
            backbone.load_weights(str(path))
    except VGGWeightsError:
        raise
    except Exception as error:  # h5py and Keras raise many types for bad files
        raise VGGWeightsError(f"{not_keras}: {type(error).__name__}: {error}") from None


def load_vgg_features(path: str | os.PathLike | None) -> VGGFeatures:
    """VGG19 features with weights from ``path`` (.pth torchvision or .h5 Keras)."""
    if not path:
        raise VGGWeightsError("the VGG perceptual loss needs VGG19 ImageNet weights from a "
                              "local file, and train.vgg_weights_path is not set. "
                              + how_to_get_weights())
    path = Path(path).expanduser()
    if not path.is_file():
        raise VGGWeightsError(f"the VGG19 weights file {path} (train.vgg_weights_path) does "
                              "not exist. " + how_to_get_weights())
    if path.suffix in (".pth", ".pt"):
        return VGGFeatures(_feature_model(lambda backbone: _load_torchvision(backbone, path)),
                           "torchvision")
    return VGGFeatures(_feature_model(lambda backbone: _load_keras(backbone, path)), "keras")


def random_vgg_features(seed: int = 0, preprocessing: str = "torchvision") -> VGGFeatures:
    """VGG19 with random weights from ``seed`` (tests and benchmarks only).

    Every kernel is drawn from a local generator (biases start at zero), so the global
    random state is left alone.
    """
    rng = np.random.default_rng(seed)

    def fill(backbone: keras.Model) -> None:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.Conv2D):
                fan_in = float(np.prod(layer.kernel.shape[:-1]))
                layer.kernel.assign(rng.normal(0, (2 / fan_in) ** 0.5, layer.kernel.shape))

    return VGGFeatures(_feature_model(fill), preprocessing)
