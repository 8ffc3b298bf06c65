"""Tiny stand-ins for the networks evaluation loads from files, built once per session.

- Keras InceptionV3 with random weights (``include_top=False, pooling="avg"``), saved as
  ``.weights.h5``: building it costs ~1 s, so it is session-scoped;
- a TorchScript "FID Inception" with the real one's calling convention
  (``forward(img, return_features=False)`` on uint8 NCHW images) whose features are the
  per-channel means and mean squares, easy to compute independently;
- segmentation SavedModels that classify pixels by their nearest palette colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import import_torch

# Segmenter classes: pixel colour -> nearest palette entry.
PALETTE = np.array([[250, 20, 20], [20, 250, 20], [20, 20, 250], [240, 240, 30]], np.uint8)


@pytest.fixture(scope="session")
def keras_inception(tmp_path_factory):
    """(InceptionV3 model with random weights, its .weights.h5 path)."""
    import keras

    keras.utils.set_random_seed(7)
    model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None)
    path = tmp_path_factory.mktemp("inception") / "random_inception.weights.h5"
    model.save_weights(path)
    return model, path


def _detector_features(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float64)
    return np.concatenate([x.mean(axis=(1, 2)), (x * x).mean(axis=(1, 2)) / 255.0], axis=1)


@pytest.fixture(scope="session")
def detector_features():
    """What TinyDetector returns for uint8 NHWC images, computed with numpy."""
    return _detector_features


@pytest.fixture(scope="session")
def torchscript_detector(tmp_path_factory) -> Path:
    """A scripted module with the FID Inception's calling convention; features as
    ``detector_features``. Checks that it receives uint8 NCHW images."""
    torch = import_torch()

    class TinyDetector(torch.nn.Module):
        def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            assert img.dtype == torch.uint8, "uint8 images expected"
            assert img.dim() == 4 and img.shape[1] == 3, "NCHW images expected"
            x = img.to(torch.float64)
            features = torch.cat([x.mean(dim=[2, 3]), (x * x).mean(dim=[2, 3]) / 255.0], dim=1)
            if return_features:
                return features
            return torch.softmax(features, dim=1)

    path = tmp_path_factory.mktemp("detector") / "tiny-inception.pt"
    torch.jit.save(torch.jit.script(TinyDetector()), str(path))
    return path


def _classify(pixels):
    """Nearest palette class of float [..., 3] pixels in [0, 255] (TF ops)."""
    import tensorflow as tf

    palette = tf.constant(PALETTE, tf.float32)
    distances = tf.reduce_sum(tf.square(pixels[..., None, :] - palette), axis=-1)
    return tf.argmin(distances, axis=-1, output_type=tf.int32)


def make_segmenter(path: Path, kind: str) -> Path:
    """A SavedModel following the documented interface.

    ``logits``: uint8 input, logits 10 * one-hot at half resolution (2x2 mean);
    ``ids``: uint8 input, int32 class ids at half resolution (top-left pixels);
    ``float01``: float32 input in [0, 1], int64 ids [N, H, W, 1] at full resolution.
    """
    import tensorflow as tf

    module = tf.Module()
    if kind == "float01":
        spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")

        @tf.function(input_signature=[spec])
        def serve(images):
            ids = _classify(images * 255.0)
            return {"classes": tf.cast(ids, tf.int64)[..., None]}
    else:
        spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")

        @tf.function(input_signature=[spec])
        def serve(images):
            pixels = tf.cast(images, tf.float32)
            if kind == "logits":
                ids = _classify(tf.nn.avg_pool2d(pixels, 2, 2, "VALID"))
                return {"logits": 10.0 * tf.one_hot(ids, len(PALETTE))}
            return {"classes": _classify(pixels[:, ::2, ::2])}

    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return path


@pytest.fixture(scope="session")
def segmenters(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("segmenters")
    return {kind: make_segmenter(root / kind, kind) for kind in ("logits", "ids", "float01")}


def _write_pngs(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        Image.fromarray(array).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="session")
def write_pngs():
    """``write_pngs(folder, {name: array})``: one PNG per array."""
    return _write_pngs


@pytest.fixture(scope="session")
def palette() -> np.ndarray:
    return PALETTE
