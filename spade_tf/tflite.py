"""TensorFlow Lite export: the generator as one ``.tflite`` flatbuffer for phones and edge
devices, with builtin operators only.

What a ``.tflite`` file of ``spade-export --format tflite`` holds:

- one signature, ``serving_default``: ``label_ids`` int32 [1, H, W] (and ``instance_ids``
  int32 [1, H, W] for models with instance edges; ``latent`` float32 [1, latent_dim] for
  VAE models: N(0, I) draws a random style) -> ``image`` uint8 [1, H, W, 3]. Batch 1 and the
  model's size are fixed, as the TFLite documentation recommends for image models on
  devices (static shapes let the delegates plan memory once);
- builtin operators only (``TFLITE_BUILTINS``): no Select TF ("Flex") operators, which the
  GPU and NNAPI delegates cannot run and which need TensorFlow's kernels in the app;
- spectral norm folded into fixed kernels, as in the SavedModel export;
- the export's metadata (:class:`~spade_tf.export_metadata.ExportMetadata`: size, classes
  with names and colours, VAE or not, instance edges) as JSON in the flatbuffer's
  ``metadata`` table under :data:`METADATA_NAME`, plus ``"format": "tflite"`` and
  ``"quantization"``; :func:`read_metadata` reads it back.

Quantizations: ``float32``; ``float16`` (weights stored in float16, half the size, computed
in float32 on CPUs, in float16 on GPU delegates); ``int8`` (dynamic range: weights in int8,
a quarter of the size, activations quantized on the fly; no calibration data needed).

Label ids are not checked on the device (TFLite drops TensorFlow's assertions): an id
outside the classes gives an all-zero one-hot row. ``spade-synthesize --tflite`` checks the
maps before the call, as it does for every back end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from spade_tf import compat
from spade_tf import signatures as sig
from spade_tf.atomic import write_bytes
from spade_tf.errors import SpadeError
from spade_tf.export_metadata import ExportMetadata, MetadataError
from spade_tf.inference_loader import load_for_inference
from spade_tf.inference_rules import to_uint8
from spade_tf.layout import TFLITE_QUANTIZATIONS, tflite_path
from spade_tf.models import build_semantic_input

QUANTIZATIONS = TFLITE_QUANTIZATIONS  # spade_tf.layout names the files
# The flatbuffer metadata entry that holds the export's metadata JSON.
METADATA_NAME = "spade_model"
LATENT = "latent"


class TFLiteError(SpadeError, ValueError):
    """A TFLite export or file that cannot be made or read, with the reason."""


def _check_quantization(quantization: str) -> None:
    if quantization not in QUANTIZATIONS:
        raise TFLiteError(f"quantization {quantization!r} is unknown: expected one of "
                          f"{list(QUANTIZATIONS)}.")


def _generation_function(generator, model_config, raw: bool = False):
    """The concrete function TFLite converts: ids (and latent) -> uint8 image (``raw``:
    the generator's float image in [-1, 1], for parity checks)."""
    height, width = model_config.image_size
    semantic_input = build_semantic_input(model_config)
    specs = {sig.LABEL_IDS: tf.TensorSpec([1, height, width], tf.int32, name=sig.LABEL_IDS)}
    if model_config.use_instance_edges:
        specs[sig.INSTANCE_IDS] = tf.TensorSpec([1, height, width], tf.int32,
                                                name=sig.INSTANCE_IDS)
    if model_config.use_vae:
        specs[LATENT] = tf.TensorSpec([1, model_config.latent_dim], tf.float32, name=LATENT)

    def generate(**inputs):
        semantic = semantic_input(inputs[sig.LABEL_IDS], inputs.get(sig.INSTANCE_IDS))
        values = {"semantic": semantic}
        if LATENT in inputs:
            values["latent"] = inputs[LATENT]
        image = generator(values, training=False)
        return {sig.IMAGE: image if raw else to_uint8(image)}

    names = list(specs)
    function = tf.function(lambda *args: generate(**dict(zip(names, args, strict=True))),
                           input_signature=list(specs.values()))
    return function.get_concrete_function()


def convert(generator, model_config, quantization: str = "float32",
            raw: bool = False) -> bytes:
    """``generator`` (float32, spectral norm folded) -> ``.tflite`` bytes, builtins only."""
    _check_quantization(quantization)
    function = _generation_function(generator, model_config, raw)
    # The function reads the Keras variables' underlying tf.Variables: a module that tracks
    # them lets the converter freeze them into constants (the generator itself does not
    # track them for TensorFlow, as the SavedModel export also found).
    holder = tf.Module()
    holder.tf_variables = [variable.value for variable in generator.variables]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as error:  # the converter raises its own ConverterError types
        raise TFLiteError(f"TFLite conversion failed: {str(error).splitlines()[0]}") from None


def with_metadata(model: bytes, metadata: dict) -> bytes:
    """``model`` with ``metadata`` (JSON) in its flatbuffer metadata table."""
    return compat.tflite_add_metadata(model, METADATA_NAME, json.dumps(metadata).encode())


def read_metadata(model: bytes, where: str = "the .tflite file") -> dict:
    """The export metadata a ``.tflite`` file of :func:`export_tflite` holds (a dict with
    :class:`ExportMetadata`'s keys, ``format`` and ``quantization``)."""
    try:
        raw = compat.tflite_metadata(model).get(METADATA_NAME)
    except Exception:  # the flatbuffer reader fails in many ways on other bytes
        raise TFLiteError(f"{where} is not a TFLite model (its bytes do not parse as one): "
                          "give a file that spade-export --format tflite wrote.") from None
    if raw is None:
        raise TFLiteError(f"{where} holds no {METADATA_NAME!r} metadata: was it written by "
                          "spade-export --format tflite?")
    try:
        data = json.loads(raw.decode())
        ExportMetadata.from_dict(data, where)
    except (ValueError, MetadataError) as error:
        raise TFLiteError(f"{where}: its metadata is unreadable: {error}") from None
    return data


def operator_names(model: bytes) -> list[str]:
    """The operators a ``.tflite`` model uses: builtin names, or ``custom:<code>`` for custom
    and Select TF (Flex) operators."""
    return compat.tflite_operators(model)


def export_tflite(model_dir: str | os.PathLike, export_base: str | os.PathLike,
                  model_name: str = "spade", quantization: str = "float32",
                  checkpoint: str | int | None = None, weights: str | None = None) -> Path:
    """Write ``model_dir``'s generator as ``tflite_path(export_base, model_name,
    quantization)``; returns the path. An existing file is refused (remove it first)."""
    _check_quantization(quantization)  # before the (slow) loading
    target = tflite_path(export_base, model_name, quantization)
    if target.exists():
        raise TFLiteError(f"{target} exists already: remove it, or pick another "
                          "--model-name or --export-base.")
    loaded = load_for_inference(model_dir, "float32", checkpoint=checkpoint, weights=weights)
    model_config = loaded.config.model
    model = convert(loaded.generator, model_config, quantization)
    unsupported = [name for name in operator_names(model) if name.startswith("custom:")]
    if unsupported:  # TFLITE_BUILTINS alone should make this impossible: say so if not
        raise TFLiteError(f"the converted model needs non-builtin operators {unsupported}.")
    metadata = ExportMetadata.of_model(
        loaded.config, model_name=model_name, version=1, max_batch_size=1, max_pixels=0,
        precision="float32", signatures=(sig.DEFAULT_SIGNATURE,), weights=loaded.weights)
    data = {**metadata.to_dict(), "format": "tflite", "quantization": quantization}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(target, with_metadata(model, data))
    except OSError as error:
        raise TFLiteError(f"cannot write {target}: {error.strerror or error}; choose an "
                          "--export-base you can write to.") from None
    return target


class TFLiteRunner:
    """A ``.tflite`` file of :func:`export_tflite` in LiteRT's interpreter (XNNPACK on
    CPUs): ``run(label_ids, instance_ids=None, latent=None)`` -> its ``image``."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        path = Path(path)
        try:
            model = path.read_bytes()
        except OSError as error:
            raise TFLiteError(f"cannot read {path}: {error.strerror or error}") from None
        self.metadata = read_metadata(model, str(path))
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise TFLiteError("running a .tflite file needs LiteRT's interpreter: pip install "
                              "'spade-tf[tflite]' (ai-edge-litert)") from None

        try:
            self._interpreter = Interpreter(model_content=model, num_threads=threads)
        except ValueError as error:
            raise TFLiteError(f"{path} is not a TFLite model: {error}") from None
        # Now rather than at the first call: XNNPACK is applied here, and LiteRT announces
        # it on stderr then (spade_cli.quiet.quiet_litert hides that line).
        self._interpreter.allocate_tensors()
        self._runner = self._interpreter.get_signature_runner(sig.DEFAULT_SIGNATURE)

    def run(self, label_ids: np.ndarray, instance_ids: np.ndarray | None = None,
            latent: np.ndarray | None = None) -> np.ndarray:
        inputs = {sig.LABEL_IDS: np.asarray(label_ids, np.int32)}
        if instance_ids is not None:
            inputs[sig.INSTANCE_IDS] = np.asarray(instance_ids, np.int32)
        if latent is not None:
            inputs[LATENT] = np.asarray(latent, np.float32)
        return self._runner(**inputs)[sig.IMAGE]
