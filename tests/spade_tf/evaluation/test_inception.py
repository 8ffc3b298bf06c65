"""Loading the Inception network from local files: Keras weights, .keras, TorchScript."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from support import import_torch

from spade_tf.evaluation.inception import (
    InceptionError,
    extract_features,
    load_inception,
)


def _images(seed: int, count: int = 4, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def _keras_reference(model, images) -> np.ndarray:
    """The documented preprocessing: bilinear resize to 299, [0, 255] -> [-1, 1]."""
    pixels = tf.image.resize(tf.cast(images, tf.float32), (299, 299), method="bilinear")
    return model(pixels / 127.5 - 1.0, training=False).numpy()


def test_keras_weights_give_the_model_features(keras_inception):
    model, path = keras_inception
    network = load_inception(path)
    images = _images(0, count=2)
    features = network(images)
    assert network.kind == "keras" and features.dtype == np.float64
    assert features.shape == (2, 2048)
    np.testing.assert_allclose(features, _keras_reference(model, images), rtol=1e-5, atol=1e-6)
    assert np.std(features) > 0  # random weights still give image-dependent features


def test_legacy_h5_file_loads_like_keras_imagenet_weights(keras_inception, tmp_path):
    # Keras's ImageNet files are legacy HDF5; a legacy whole-model .h5 takes the same path.
    model, _ = keras_inception
    model.save(tmp_path / "inception.h5")
    images = _images(5, count=2)
    np.testing.assert_allclose(load_inception(tmp_path / "inception.h5")(images),
                               _keras_reference(model, images), rtol=1e-5, atol=1e-6)


def test_whole_keras_model_and_output_check(tmp_path):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3)(inputs))
    model = keras.Model(inputs, pooled)
    model.save(tmp_path / "features.keras")
    images = _images(1, count=3)
    features = load_inception(tmp_path / "features.keras")(images)
    np.testing.assert_allclose(features, _keras_reference(model, images), rtol=1e-5, atol=1e-6)

    keras.Model(inputs, keras.layers.Conv2D(6, 3)(inputs)).save(tmp_path / "maps.keras")
    with pytest.raises(InceptionError, match=r"expected one \[N, 2048\] feature output"):
        load_inception(tmp_path / "maps.keras")


def test_weights_of_another_network_are_refused(tmp_path):
    other = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    other.save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(InceptionError, match="does not fit Keras's InceptionV3"):
        load_inception(tmp_path / "other.weights.h5")


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(InceptionError, match="does not exist.*inception-2015-12-05.pt"):
        load_inception(tmp_path / "inception.pt")
    (tmp_path / "inception.onnx").write_bytes(b"x")
    with pytest.raises(InceptionError, match=r"extension \.onnx"):
        load_inception(tmp_path / "inception.onnx")


def test_torchscript_detector_gets_uint8_nchw_and_return_features(torchscript_detector,
                                                                  detector_features):
    network = load_inception(torchscript_detector)
    images = _images(2, count=3, size=20)
    features = network(images)
    assert network.kind == "torchscript" and features.dtype == np.float64
    np.testing.assert_allclose(features, detector_features(images), rtol=1e-12)


def test_torchscript_errors_are_explained(tmp_path, monkeypatch):
    torch = import_torch()
    torch.save({"weight": torch.zeros(2)}, tmp_path / "state_dict.pth")
    with pytest.raises(InceptionError, match="is not a TorchScript module"):
        load_inception(tmp_path / "state_dict.pth")

    class NoFeatures(torch.nn.Module):
        def forward(self, img: torch.Tensor) -> torch.Tensor:
            return img.float().mean(dim=[2, 3])

    torch.jit.save(torch.jit.script(NoFeatures()), str(tmp_path / "classifier.pt"))
    with pytest.raises(InceptionError, match=r"return_features=True"):
        load_inception(tmp_path / "classifier.pt")(_images(3, count=1, size=8))

    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # as if not installed
    with pytest.raises(InceptionError, match=r"pip install 'spade-tf\[convert\]'"):
        load_inception(tmp_path / "classifier.pt")


def test_batches_keep_one_size_and_report_progress(torchscript_detector, detector_features):
    network = load_inception(torchscript_detector)
    small, large = _images(4, count=3, size=8), _images(5, count=2, size=12)
    images = [*small, *large]
    calls = []
    features = extract_features(network, iter(images), batch_size=2, total=5,
                                progress=lambda done, total: calls.append((done, total)))
    # Batches: 2 small, 1 small (the size changes), 2 large.
    assert calls == [(2, 5), (3, 5), (5, 5)]
    np.testing.assert_allclose(features, np.concatenate(
        [detector_features(small), detector_features(large)]), rtol=1e-12)
