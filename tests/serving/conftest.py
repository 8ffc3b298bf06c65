"""Tiny exported models, in-process servers on loopback, and the expected images.

Two models: a VAE one with instance edges (all four signatures, warm-up requests) and a
plain one without instance edges (only the default signature, which is deterministic),
the session's exports "spade" and "plain" (tests/support/exports.py). Everything is
session-scoped: exporting and loading dominate the run time.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.exports import KINDS

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # --import-mode=importlib does not add the rootdir
    sys.path.insert(0, str(ROOT))

from serving.client import SpadeClient  # noqa: E402
from serving.server import SpadeServer  # noqa: E402
from spade_tf import inference_rules as inference  # noqa: E402
from spade_tf import signatures as sig  # noqa: E402
from spade_tf.config import ModelConfig  # noqa: E402
from spade_tf.model_dir import load_model_dir  # noqa: E402
from spade_tf.models import build_semantic_input  # noqa: E402

VAE_CONFIG = KINDS["spade"].model
PLAIN_CONFIG = KINDS["plain"].model
# Every network call in these tests has a deadline.
DEADLINE = 30.0


@dataclasses.dataclass
class ExportedModel:
    """A model folder, its export, and the networks in memory for the Keras path."""

    name: str
    config: ModelConfig
    model_dir: Path
    base: Path  # <export_base>/<name>: what the server polls
    version_dir: Path
    generator: keras.Model
    encoder: keras.Model | None
    saved_model: object  # the export, loaded in-process with tf.saved_model.load

    @property
    def uses_instances(self) -> bool:
        return self.config.use_instance_edges

    def random_maps(self, seed: int, batch: int = 1) -> dict[str, np.ndarray]:
        """Valid inputs for the map part of a signature: label (and instance) ids."""
        rng = np.random.default_rng(seed)
        height, width = self.config.image_size
        maps = {sig.LABEL_IDS: rng.integers(0, self.config.num_classes,
                                            (batch, height, width)).astype(np.int32)}
        if self.uses_instances:
            # Blocky instances, so the edge channel has both values.
            blocks = rng.integers(0, 6, (batch, height // 8, width // 8))
            maps[sig.INSTANCE_IDS] = np.kron(blocks, np.ones((8, 8), np.int64)).astype(np.int32)
        return maps

    def in_process(self, signature: str, **inputs) -> dict[str, np.ndarray]:
        """The exported SavedModel's signature, called in this process."""
        result = self.saved_model.signatures[signature](
            **{alias: tf.constant(value) for alias, value in inputs.items()})
        return {alias: tensor.numpy() for alias, tensor in result.items()}

    def keras_image(self, maps: dict[str, np.ndarray], latent=None) -> np.ndarray:
        """The same image from the Keras networks: semantic input, generator, to uint8."""
        semantic = build_semantic_input(self.config)(maps[sig.LABEL_IDS],
                                                     maps.get(sig.INSTANCE_IDS))
        inputs = {"semantic": semantic}
        if latent is not None:
            inputs["latent"] = latent
        return inference.to_uint8(self.generator(inputs, training=False)).numpy()

    # The package's one rule for styles (spade_tf.inference_rules, checked against hand-written
    # numbers in tests/spade_tf/test_inference.py): the export must follow it.
    def seeded_latent(self, seeds) -> tf.Tensor:
        return inference.seeded_latent(np.asarray(seeds, np.int64), self.config.latent_dim)

    def style_latent(self, style: np.ndarray) -> tf.Tensor:
        return inference.style_latent(self.encoder, self.config.latent_dim, len(style),
                                      photo=inference.photo_to_unit(style))


def _exported(exports, kind: str) -> ExportedModel:
    """The session's export of ``kind`` (random weights, so images are not constant), with
    its networks loaded from its model folder and the export loaded in this process."""
    export = exports(kind)
    networks = load_model_dir(export.model_dir)
    return ExportedModel(name=export.name, config=export.model, model_dir=export.model_dir,
                         base=export.base, version_dir=export.version_dir,
                         generator=networks.generator, encoder=networks.encoder,
                         saved_model=tf.saved_model.load(str(export.version_dir)))


@pytest.fixture(scope="session")
def vae_model(exports) -> ExportedModel:
    return _exported(exports, "spade")


@pytest.fixture(scope="session")
def plain_model(exports) -> ExportedModel:
    # No warm-up file: also checks that the server does without one.
    return _exported(exports, "plain")


def _copy_version(model: ExportedModel, base: Path, version: int) -> Path:
    """Install ``model``'s export as ``base/<version>`` atomically, as an export would."""
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".copy-{version}"
    shutil.copytree(model.version_dir, staging)
    return staging.rename(base / str(version))


@pytest.fixture(scope="session")
def copy_version():
    """``copy_version(model, base, version)``: a second base without exporting again."""
    return _copy_version


def _serving(model):
    """A started server of ``model`` until the session ends. No polling: nothing writes
    into these bases (test_load uses a base of its own)."""
    server = SpadeServer(model.base, model.name, port=0, poll_seconds=0)
    server.start()
    yield server
    server.stop(grace=1.0).wait(10)


@pytest.fixture(scope="session")
def vae_server(vae_model):
    yield from _serving(vae_model)


@pytest.fixture(scope="session")
def plain_server(plain_model):
    yield from _serving(plain_model)


@pytest.fixture
def vae_client(vae_server, vae_model):
    with SpadeClient(vae_server.address, vae_model.name, timeout=DEADLINE) as client:
        yield client


@pytest.fixture
def plain_client(plain_server, plain_model):
    with SpadeClient(plain_server.address, plain_model.name, timeout=DEADLINE) as client:
        yield client
