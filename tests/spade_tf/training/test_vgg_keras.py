"""Keras's VGG19 weights file (what keras-io's GauGAN downloads) for the perceptual loss:
loaded from the layout Keras downloads, and fed Keras's own preprocessing (issue 24, 11).
No download: the files are written from a randomly initialised VGG19
(support/vgg_weights.py); spade-train's side is in tests/spade_cli/test_vgg_weights.py.
"""

from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from support.vgg_weights import write_download_layout

from spade_tf.training import vgg as vgg_module
from spade_tf.training.vgg import KERAS_FILE, VGGWeightsError, load_vgg_features

FEATURES = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


@pytest.fixture(scope="module")
def source() -> keras.Model:
    """A VGG19 without its top, random kernels and (unlike a fresh one) random biases."""
    model = keras.applications.VGG19(include_top=False, weights=None,
                                     input_shape=(None, None, 3))
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.uniform(-0.5, 0.5, layer.bias.shape))
    return model


def keras_features(weights: Path, images: np.ndarray) -> list[np.ndarray]:
    """The five feature maps as Keras computes them: ``VGG19(weights=path)`` (Keras's own
    loader reads the file) on ``vgg19.preprocess_input`` of the 0..255 images."""
    model = keras.applications.VGG19(include_top=False, weights=str(weights),
                                     input_shape=(None, None, 3))
    features = keras.Model(model.input, [model.get_layer(name).output for name in FEATURES])
    pixels = keras.applications.vgg19.preprocess_input((images + 1.0) * 127.5)
    return [np.asarray(feature) for feature in features(pixels)]


def assert_same_features(got: list, want: list) -> None:
    assert len(got) == len(want) == 5
    for ours, theirs in zip(got, want, strict=True):
        ours = np.asarray(ours)
        assert ours.shape == theirs.shape and np.abs(theirs).max() > 0
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


IMAGES = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)


def test_the_downloaded_layout_gives_kerass_features(source, tmp_path):
    path = write_download_layout(source, tmp_path / KERAS_FILE)
    with h5py.File(path, "r") as file:  # the names Keras's download holds
        assert list(file["block1_conv1"].attrs["weight_names"]) == [
            b"block1_conv1_W_1:0", b"block1_conv1_b_1:0"]
    vgg = load_vgg_features(path)
    assert vgg.preprocessing == "keras"
    assert_same_features(vgg(IMAGES), keras_features(path, IMAGES))


def test_the_with_top_file_and_a_keras_3_weights_file_load_too(source, tmp_path):
    notop = write_download_layout(source, tmp_path / KERAS_FILE)
    want = keras_features(notop, IMAGES)
    top = write_download_layout(source, tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
                                top=True)
    assert_same_features(load_vgg_features(top)(IMAGES), want)
    saved = tmp_path / "vgg19_notop.weights.h5"
    source.save_weights(saved)  # Keras 3's own layout
    assert_same_features(load_vgg_features(saved)(IMAGES), want)


def test_files_that_are_not_vgg19_are_named(source, tmp_path):
    path = write_download_layout(source, tmp_path / "cut.h5")
    with h5py.File(path, "a") as file:
        names = [n for n in file.attrs["layer_names"] if n != b"block5_conv4"]
        file.attrs["layer_names"] = np.array(names, "S")
    with pytest.raises(VGGWeightsError, match=r"cut.h5 is not a Keras VGG19 weights file "
                       rf"\({KERAS_FILE}\): it has no layer 'block5_conv4'\."):
        load_vgg_features(path)
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(VGGWeightsError, match=r"bad.h5 is not a Keras VGG19 weights file"):
        load_vgg_features(tmp_path / "bad.h5")


def test_messages_name_both_files_where_they_are_and_which_reproduces(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(vgg_module, "usual_locations", lambda: [
        tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth",
        tmp_path / "keras" / "models" / KERAS_FILE])
    with pytest.raises(VGGWeightsError) as caught:
        load_vgg_features("~/nothing.h5")  # ~ is the user's home, as in a shell
    message = str(caught.value)
    assert message.startswith(f"the VGG19 weights file {tmp_path / 'nothing.h5'} "
                              "(train.vgg_weights_path) does not exist. ")
    assert "This machine has" not in message
    for words in ("torchvision's vgg19-dcbb9e9d.pth reproduces the reference",
                  "usually in ~/.cache/torch/hub/checkpoints/",
                  f"Keras's {KERAS_FILE} (usually in ~/.keras/models/",
                  "also works but does not reproduce it (other weights, fed caffe-style BGR "
                  "inputs", "--set train.vgg_weights_path=/path/to/file",
                  "--set train.vgg_weight=0"):
        assert words in message, words
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / KERAS_FILE).write_bytes(b"")
    with pytest.raises(VGGWeightsError) as caught:
        load_vgg_features(None)
    assert str(caught.value).startswith(
        "the VGG perceptual loss needs VGG19 ImageNet weights from a local file, and "
        f"train.vgg_weights_path is not set. This machine has "
        f"{tmp_path / 'keras' / 'models' / KERAS_FILE}. ")
