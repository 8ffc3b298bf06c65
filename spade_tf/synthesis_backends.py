"""Where :func:`spade_tf.synthesis.synthesize_files` gets its images: the back ends.

A back end is anything with ``info`` (:class:`ModelInfo`) and ``synthesize(labels,
instances, seed, style)``:

- :class:`ModelFolderBackend`: a model folder (``spade-train`` / ``spade-convert-torch``
  output), run in this process as the exporter would serve it;
- :class:`SavedModelBackend`: an exported SavedModel version, run in this process;
- :class:`TFLiteBackend`: a ``.tflite`` file (``spade-export --format tflite``) in LiteRT's
  interpreter, one map at a time (its batch is 1);
- the gRPC client (``spade_cli.synthesize`` adapts ``serving.client.SpadeClient``).

All of them follow :mod:`spade_tf.inference_rules`: the same seed or style photo gives the
same image from each.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from spade_tf import layout
from spade_tf.classes import ClassTable
from spade_tf.config import Config
from spade_tf.export_metadata import ExportMetadata, MetadataError
from spade_tf.label_space import LabelSpace
from spade_tf.map_files import SynthesisError


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a served or saved model accepts, whatever runs it."""

    image_size: tuple[int, int]
    label_space: LabelSpace
    use_vae: bool
    max_batch_size: int
    classes: ClassTable

    @classmethod
    def from_metadata(cls, metadata: ExportMetadata) -> ModelInfo:
        """From an export's metadata (``spade_model.json`` or the ``model_info`` signature)."""
        return cls(metadata.image_size, LabelSpace.from_model(metadata), metadata.use_vae,
                   metadata.max_batch_size, metadata.class_table())

    @classmethod
    def from_config(cls, config: Config) -> ModelInfo:
        """From a model folder's settings, as its export would describe it."""
        model = config.model
        return cls(tuple(model.image_size), model.label_space, model.use_vae,
                   config.export.max_batch_size, config.classes())

    @property
    def use_instance_edges(self) -> bool:
        return self.label_space.uses_instance_edges

    def check_ids(self, ids: np.ndarray, name: str) -> None:
        """Ids outside the classes (and the don't-care id) -> an error naming id and file."""
        bad = self.label_space.find_invalid(ids)
        if bad is not None:
            listed = f", ids {list(bad.ids[:8])}" if len(bad.ids) > 1 else ""
            raise SynthesisError(
                f"{name} has label id {bad.ids[0]} ({bad.pixels} pixels{listed}): this "
                f"model's ids are {bad.allowed}. Is it a map of this dataset's classes?")


class Backend(Protocol):
    info: ModelInfo

    def synthesize(self, labels: np.ndarray, instances: np.ndarray | None,
                   seed: int | None, style: np.ndarray | None) -> np.ndarray:
        """int32 [B, H, W] ids (and instance ids), a style seed or a uint8 style photo
        [h, w, 3] for VAE models -> uint8 [B, H, W, 3]."""


class ModelFolderBackend:
    """A model folder's generator (and encoder), as the exporter would serve it."""

    def __init__(self, model_dir: str | os.PathLike, checkpoint: str | None = None,
                 precision: str | None = None, weights: str | None = None):
        import tensorflow as tf

        from spade_tf.inference_loader import load_for_inference
        from spade_tf.models import build_semantic_input

        # What the exporter serves: spectral norm folded, at ``precision`` (default: the
        # config's export.precision), the averaged generator where the folder has one
        # (``weights``: load_for_inference's).
        networks = load_for_inference(model_dir, precision, checkpoint=checkpoint,
                                      weights=weights)
        config = networks.config
        model = config.model
        self.info = ModelInfo.from_config(config)
        self._generator, self._encoder = networks.generator, networks.encoder
        self._latent_dim = model.latent_dim
        self._semantic = build_semantic_input(model)
        self._call = tf.function(self._images)

    def _images(self, labels, instances, seeds, style):
        from spade_tf.inference_rules import photo_to_unit, style_latent, to_uint8

        semantic = self._semantic(labels, instances)
        inputs = {"semantic": semantic}
        if self._encoder is not None:
            import tensorflow as tf

            batch = tf.shape(labels)[0]
            photo = None if style is None else tf.repeat(photo_to_unit(style), batch, axis=0)
            inputs["latent"] = style_latent(self._encoder, self._latent_dim, batch,
                                            photo=photo, seeds=seeds)
        return to_uint8(self._generator(inputs, training=False))

    def synthesize(self, labels, instances, seed, style):
        seeds = None if seed is None else np.full([len(labels)], seed, np.int64)
        style_batch = None if style is None else style[np.newaxis]
        images = self._call(labels.astype(np.int32),
                            None if instances is None else instances.astype(np.int32),
                            seeds, style_batch)
        return images.numpy()


class SavedModelBackend:
    """An exported version folder (``exports/<name>/<version>``), loaded in this process."""

    def __init__(self, version_dir: str | os.PathLike):
        import tensorflow as tf

        from spade_tf import signatures as sig

        folder = Path(version_dir)
        if not folder.exists():
            raise SynthesisError(f"--export {folder} does not exist: give a version folder "
                                 "that spade-export wrote, e.g. exports/spade/1.")
        metadata_path = folder / layout.SPADE_METADATA_FILE
        if not (folder / layout.SAVED_MODEL_FILE).is_file() or not metadata_path.is_file():
            hint = ""
            versions = [str(version) for version in layout.version_folders(folder)]
            if versions:
                hint = (f" (it holds versions {', '.join(versions)}: give e.g. "
                        f"{folder / versions[-1]})")
            raise SynthesisError(f"{folder} is not a spade-export version folder{hint}: "
                                 f"expected {layout.SAVED_MODEL_FILE} and "
                                 f"{layout.SPADE_METADATA_FILE}.")
        try:
            self.info = ModelInfo.from_metadata(ExportMetadata.read(metadata_path))
        except MetadataError as error:
            raise SynthesisError(str(error)) from None
        self._signatures = tf.saved_model.load(str(folder)).signatures
        self._sig = sig

    def synthesize(self, labels, instances, seed, style):
        import tensorflow as tf

        sig = self._sig
        inputs = {sig.LABEL_IDS: tf.constant(labels, tf.int32)}
        if instances is not None:
            inputs[sig.INSTANCE_IDS] = tf.constant(instances, tf.int32)
        name = sig.DEFAULT_SIGNATURE
        if seed is not None:
            name = sig.SEEDED_SIGNATURE
            inputs[sig.SEED] = tf.fill([len(labels)], tf.constant(seed, tf.int64))
        elif style is not None:
            name = sig.STYLE_SIGNATURE
            inputs[sig.STYLE_IMAGE] = tf.repeat(tf.constant(style[np.newaxis], tf.uint8),
                                                len(labels), axis=0)
        return self._signatures[name](**inputs)[sig.IMAGE].numpy()


class TFLiteBackend:
    """A ``.tflite`` file of :func:`spade_tf.tflite.export_tflite`, in LiteRT's interpreter.

    Seeds give the latent of :mod:`spade_tf.inference_rules`, computed here and fed to the
    file's ``latent`` input, so a seed gives the image the other back ends give; a style
    photo needs the encoder, which the file does not hold."""

    def __init__(self, path: str | os.PathLike):
        from spade_tf.tflite import TFLiteError, TFLiteRunner

        if not Path(path).is_file():
            raise SynthesisError(f"--tflite {path} does not exist: give a .tflite file that "
                                 "spade-export --format tflite wrote.")
        try:
            self._runner = TFLiteRunner(path)
            metadata = ExportMetadata.from_dict(self._runner.metadata, str(path))
        except (TFLiteError, MetadataError) as error:
            raise SynthesisError(str(error)) from None
        self.info = ModelInfo.from_metadata(metadata)
        self._latent_dim = metadata.latent_dim

    def _latent(self, seed: int | None) -> np.ndarray:
        import tensorflow as tf

        from spade_tf.inference_rules import style_latent

        seeds = None if seed is None else tf.constant([seed], tf.int64)
        return style_latent(None, self._latent_dim, 1, seeds=seeds).numpy()

    def synthesize(self, labels, instances, seed, style):
        if style is not None:
            raise SynthesisError("--style needs the style encoder, which a .tflite file does "
                                 "not hold: use --export or --model-dir for styles.")
        images = []
        for index in range(len(labels)):
            latent = self._latent(seed) if self.info.use_vae else None
            images.append(self._runner.run(
                labels[index:index + 1],
                None if instances is None else instances[index:index + 1], latent)[0])
        return np.stack(images)
