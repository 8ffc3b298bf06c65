"""The Inception feature network of FID and KID, loaded from a local file.

Nothing is downloaded: the user gives one of two files (see docs/evaluation.md).

- Keras's InceptionV3 (``.h5``, ``.weights.h5``: weights for
  ``keras.applications.InceptionV3(include_top=False, pooling="avg")``, such as Keras's
  ImageNet file ``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5``; or a whole
  ``.keras`` model mapping [-1, 1] images to pooled features). Images are resized to
  299x299 (bilinear, half-pixel centres, no antialiasing) and scaled to [-1, 1] as that
  network's ImageNet training did; features are the 2048 average-pooled activations.
- The TorchScript FID Inception of the PyTorch FID tools (``.pt``, ``.pth``,
  ``.torchscript``: ``inception-2015-12-05.pt``, a translation of TensorFlow's 2015
  Inception graph that the original FID code used). Needs PyTorch (the ``[convert]``
  extra). Its calling convention, from the public code that uses it:
  StyleGAN2-ADA (NVlabs/stylegan2-ada-pytorch, ``metrics/metric_utils.py`` and
  ``metrics/frechet_inception_distance.py``) loads it with ``torch.jit.load(f).eval()``
  and calls ``detector(images, return_features=True)`` on its uint8 NCHW dataset batches
  (generated images are first converted to uint8); clean-fid
  (``cleanfid/inception_torchscript.py``) calls ``base(x, return_features=True)`` on
  [0, 255] NCHW images and reshapes the result to ``[N, 2048]``. The module's own
  TorchScript code, as transcribed in public repositories, resizes to 299x299 itself
  (bilinear ``grid_sample``) and scales by ``(x - 128) / 128``. So images go in as uint8
  NCHW at their own size, unresized.

The two networks give different features: only FIDs computed with the same file are
comparable, and only the TorchScript one matches the numbers of the common tools.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from spade_tf.evaluation.errors import EvaluationError
from spade_tf.evaluation.images import same_size_batches
from spade_tf.torch_import import import_torch_beside_tensorflow

INCEPTION_SIZE = 299
KERAS_SUFFIXES = (".h5", ".keras")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript")
KERAS_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
TORCHSCRIPT_FILE = "inception-2015-12-05.pt"


class InceptionError(EvaluationError):
    """The Inception file is missing, of an unknown kind or not the expected network."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class InceptionFeatures:
    """A loaded feature network: ``features = network(uint8 [N, H, W, 3])`` -> float64 [N, D]."""

    kind = ""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise InceptionError(f"the Inception network takes uint8 [N, H, W, 3] images; got "
                                 f"{images.dtype} {images.shape}.")
        features = self._features(images)
        if features.ndim != 2 or features.shape[0] != images.shape[0]:
            raise InceptionError(f"{self.path} returned features of shape {features.shape} for "
                                 f"{images.shape[0]} images; expected [N, 2048] pooled features. "
                                 "Is it the Inception feature network?")
        return features.astype(np.float64)

    def _features(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class KerasInception(InceptionFeatures):
    """Keras's InceptionV3 without its classifier (or a whole ``.keras`` feature model)."""

    kind = "keras"

    def __init__(self, path: Path, model) -> None:
        super().__init__(path)
        self.model = model

    def _features(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        pixels = tf.image.resize(tf.cast(images, tf.float32), (INCEPTION_SIZE, INCEPTION_SIZE),
                                 method="bilinear")
        return np.asarray(self.model(pixels / 127.5 - 1.0, training=False))


class TorchScriptInception(InceptionFeatures):
    """The TorchScript FID Inception, called with uint8 NCHW images."""

    kind = "torchscript"

    def __init__(self, path: Path, module, device) -> None:
        super().__init__(path)
        self.module = module
        self.device = device

    def _features(self, images: np.ndarray) -> np.ndarray:
        torch = import_torch_beside_tensorflow()

        batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        try:
            with torch.no_grad():
                features = self.module(batch.to(self.device), return_features=True)
        except RuntimeError as error:  # TorchScript errors are RuntimeErrors
            raise InceptionError(
                f"{self.path} failed on uint8 NCHW images {tuple(batch.shape)} called as "
                f"detector(images, return_features=True): {_first_line(error)}. Expected the "
                f"TorchScript FID Inception ({TORCHSCRIPT_FILE}).") from None
        if not isinstance(features, torch.Tensor):
            raise InceptionError(f"{self.path} returned {type(features).__name__}, not a "
                                 f"tensor; expected the TorchScript FID Inception "
                                 f"({TORCHSCRIPT_FILE}).")
        return features.detach().to("cpu", torch.float64).numpy()


def load_inception(path: str | os.PathLike) -> InceptionFeatures:
    """Load the Inception network of ``path``; its kind is chosen by file extension."""
    path = Path(path)
    if not path.is_file():
        raise InceptionError(f"the Inception file {path} does not exist. Download Keras's "
                             f"{KERAS_NOTOP_FILE} or the TorchScript {TORCHSCRIPT_FILE} "
                             "yourself (docs/evaluation.md) and pass its path.")
    suffix = path.suffix.lower()
    if suffix in TORCHSCRIPT_SUFFIXES:
        return _load_torchscript(path)
    if suffix in KERAS_SUFFIXES:
        return _load_keras(path)
    raise InceptionError(f"cannot tell the kind of Inception file {path.name} from its extension "
                         f"{suffix or '(none)'}: expected {'/'.join(KERAS_SUFFIXES)} (Keras "
                         f"InceptionV3) or {'/'.join(TORCHSCRIPT_SUFFIXES)} (TorchScript FID "
                         "Inception).")


def _load_keras(path: Path) -> KerasInception:
    import keras

    if path.suffix.lower() == ".keras":
        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as error:  # Keras raises many types for unreadable files
            raise InceptionError(f"cannot load the Keras model {path}: {_first_line(error)}"
                                 ) from None
        shapes = [tuple(output.shape) for output in model.outputs]
        if len(shapes) != 1 or len(shapes[0]) != 2:
            raise InceptionError(f"the Keras model {path} has outputs {shapes}; expected one "
                                 "[N, 2048] feature output (InceptionV3 with "
                                 "include_top=False, pooling='avg').")
        return KerasInception(path, model)
    model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                           input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise InceptionError(
            f"{path} does not fit Keras's InceptionV3 without its classifier "
            f"(include_top=False): {_first_line(error)}. Expected {KERAS_NOTOP_FILE} (the "
            "'_notop' file: the full one's extra layers do not fit) or weights saved from "
            "keras.applications.InceptionV3(include_top=False).") from None
    return KerasInception(path, model)


def _load_torchscript(path: Path) -> TorchScriptInception:
    try:
        torch = import_torch_beside_tensorflow()
    except ImportError:
        raise InceptionError(
            f"reading the TorchScript Inception {path.name} needs PyTorch, an optional extra: "
            "pip install 'spade-tf[convert]' (or pip install torch). Or use Keras's "
            f"{KERAS_NOTOP_FILE} instead.") from None
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as error:
        raise InceptionError(
            f"{path} is not a TorchScript module ({_first_line(error)}). Expected the "
            f"TorchScript FID Inception {TORCHSCRIPT_FILE} of StyleGAN2-ADA / clean-fid; "
            "pytorch-fid's pt_inception-*.pth is a state dict for its own network and is not "
            "supported.") from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return TorchScriptInception(path, module.eval().to(device), device)


def extract_features(network: InceptionFeatures, images: Iterable[np.ndarray],
                     batch_size: int = 50, total: int | None = None,
                     progress: Callable[[int, int | None], None] | None = None) -> np.ndarray:
    """Float64 ``[N, D]`` features of uint8 ``[H, W, 3]`` images, in batches.

    Consecutive images of one size share a batch (a new size starts a new one).
    ``progress(done, total)`` is called after each batch.
    """
    chunks = []
    done = 0
    for _, batch in same_size_batches(((str(i), image) for i, image in enumerate(images)),
                                      batch_size):
        chunks.append(network(batch))
        done += batch.shape[0]
        if progress is not None:
            progress(done, total)
    if not chunks:
        raise InceptionError("no images to compute features of.")
    return np.concatenate(chunks)
