"""Export a trained model folder as a SavedModel that TensorFlow Serving loads as is.

``export_model(model_dir, export_base, model_name)`` writes
``<export_base>/<model_name>/<version>/`` with the signatures of
:mod:`spade_tf.signatures`. Label maps go in as compact integer ids and are turned into
the one-hot semantic input (plus instance edges) inside the graph, where ids out of range
fail with a message naming the id; images come out as uint8. The version folder is
written under a hidden name and renamed when complete, so a polling server never sees
half an export, and it carries ``assets.extra/tf_serving_warmup_requests`` so the first
real request does not pay for graph warm-up. The architecture comes from the saved
model folder (the ``.keras`` networks and the ``config.yaml`` saved with them).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from spade_tf import signatures as sig
from spade_tf.errors import SpadeError
from spade_tf.inference import photo_to_unit, style_latent, to_uint8
from spade_tf.layers.semantic import semantic_one_hot
from spade_tf.model_dir import load_model_dir
from spade_tf.precision import policy_name, with_precision


class ExportError(SpadeError, ValueError):
    """The model folder cannot be exported (or the target is unusable)."""


def _maps_spec(uses_instances: bool) -> list[tf.TensorSpec]:
    specs = [tf.TensorSpec([None, None, None], tf.int32, name=sig.LABEL_IDS)]
    if uses_instances:
        specs.append(tf.TensorSpec([None, None, None], tf.int32, name=sig.INSTANCE_IDS))
    return specs


SEED_SPEC = tf.TensorSpec([None], tf.int64, name=sig.SEED)
STYLE_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name=sig.STYLE_IMAGE)


class SpadeServingModule(tf.Module):
    """The served computation around the generator (and the encoder of VAE models)."""

    def __init__(self, generator, encoder, model_config, max_batch_size: int,
                 max_pixels: int):
        super().__init__(name="spade_serving")
        self.generator = generator
        self.encoder = encoder
        self.config = model_config
        self.max_batch_size = max_batch_size
        self.max_pixels = max_pixels
        self.image_size = tuple(model_config.image_size)
        # Track the Keras networks' underlying tf.Variables on the module itself: without
        # this the signatures read variables the checkpoint does not restore under TF's C++
        # loader (the one TF Serving uses), although tf.saved_model.load hides the problem.
        self.tf_variables = [variable.value for network in (generator, encoder)
                             if network is not None for variable in network.variables]

    # -- checks ---------------------------------------------------------------------

    def _check_batch(self, tensor, what: str):
        return tf.debugging.assert_less_equal(
            tf.shape(tensor)[0], self.max_batch_size,
            message=f"{what}: batch larger than this export's limit of "
                    f"{self.max_batch_size} examples; split the request")

    def _check_maps(self, label_ids, instance_ids):
        height, width = self.image_size
        checks = [
            self._check_batch(label_ids, sig.LABEL_IDS),
            tf.debugging.assert_equal(
                tf.shape(label_ids)[1:], tf.constant([height, width]),
                message=f"{sig.LABEL_IDS} must be [batch, {height}, {width}] (this model's "
                        "image size); resize the label map with nearest neighbour first"),
        ]
        if instance_ids is not None:
            checks.append(tf.debugging.assert_equal(
                tf.shape(instance_ids), tf.shape(label_ids),
                message=f"{sig.INSTANCE_IDS} must have the shape of {sig.LABEL_IDS}"))
        return checks

    def _check_style(self, style_image):
        return [
            self._check_batch(style_image, sig.STYLE_IMAGE),
            tf.debugging.assert_less_equal(
                tf.shape(style_image)[1] * tf.shape(style_image)[2], self.max_pixels,
                message=f"{sig.STYLE_IMAGE} has more than this export's limit of "
                        f"{self.max_pixels} pixels; downscale it first"),
        ]

    # -- computation ----------------------------------------------------------------

    def _semantic(self, label_ids, instance_ids):
        with tf.control_dependencies(self._check_maps(label_ids, instance_ids)):
            return semantic_one_hot(label_ids, self.config.num_classes,
                                    self.config.use_dontcare_label, self.config.dontcare_label,
                                    instance_ids)

    def _generate(self, semantic, latent=None) -> dict:
        inputs = {"semantic": semantic}
        if self.encoder is not None:
            if latent is None:  # a random style (see spade_tf.inference)
                latent = style_latent(self.encoder, self.config.latent_dim,
                                      tf.shape(semantic)[0])
            inputs["latent"] = latent
        return {sig.IMAGE: to_uint8(self.generator(inputs, training=False))}

    def _encode(self, style_image) -> dict:
        with tf.control_dependencies(self._check_style(style_image)):
            photo = photo_to_unit(style_image)
        encoded = self.encoder(photo, training=False)
        return {sig.MEAN: encoded["mean"], sig.LOG_VARIANCE: encoded["log_variance"]}

    def default(self, label_ids, instance_ids=None) -> dict:
        return self._generate(self._semantic(label_ids, instance_ids))

    def seeded(self, label_ids, seed, instance_ids=None) -> dict:
        check = tf.debugging.assert_equal(tf.shape(seed)[0], tf.shape(label_ids)[0],
                                          message=f"one {sig.SEED} per label map")
        with tf.control_dependencies([check]):
            latent = style_latent(self.encoder, self.config.latent_dim, None, seeds=seed)
        return self._generate(self._semantic(label_ids, instance_ids), latent)

    def styled(self, label_ids, style_image, instance_ids=None) -> dict:
        check = tf.debugging.assert_equal(tf.shape(style_image)[0], tf.shape(label_ids)[0],
                                          message=f"one {sig.STYLE_IMAGE} per label map")
        with tf.control_dependencies([check]):
            latent = self._encode(style_image)[sig.MEAN]
        return self._generate(self._semantic(label_ids, instance_ids), latent)

    # -- signatures -----------------------------------------------------------------

    def signatures(self) -> dict:
        """Concrete functions whose argument names are the signatures' input names."""
        uses_instances = self.config.use_instance_edges
        maps = _maps_spec(uses_instances)
        if uses_instances:
            functions = {
                sig.DEFAULT_SIGNATURE: (lambda label_ids, instance_ids:
                                        self.default(label_ids, instance_ids), maps),
                sig.SEEDED_SIGNATURE: (lambda label_ids, instance_ids, seed:
                                       self.seeded(label_ids, seed, instance_ids),
                                       [*maps, SEED_SPEC]),
                sig.STYLE_SIGNATURE: (lambda label_ids, instance_ids, style_image:
                                      self.styled(label_ids, style_image, instance_ids),
                                      [*maps, STYLE_SPEC]),
            }
        else:
            functions = {
                sig.DEFAULT_SIGNATURE: (lambda label_ids: self.default(label_ids), maps),
                sig.SEEDED_SIGNATURE: (lambda label_ids, seed: self.seeded(label_ids, seed),
                                       [*maps, SEED_SPEC]),
                sig.STYLE_SIGNATURE: (lambda label_ids, style_image:
                                      self.styled(label_ids, style_image), [*maps, STYLE_SPEC]),
            }
        functions[sig.ENCODE_SIGNATURE] = (lambda style_image: self._encode(style_image),
                                           [STYLE_SPEC])
        if self.encoder is None:
            functions = {sig.DEFAULT_SIGNATURE: functions[sig.DEFAULT_SIGNATURE]}
        return {name: tf.function(fn, input_signature=spec).get_concrete_function()
                for name, (fn, spec) in functions.items()}


def next_version(model_base: Path) -> int:
    versions = [int(p.name) for p in model_base.iterdir() if p.is_dir() and p.name.isdigit()] \
        if model_base.is_dir() else []
    return max(versions, default=0) + 1


def _warmup_requests(path: Path, model_name: str, module: SpadeServingModule) -> None:
    """A few PredictionLog records (one per signature) for TF Serving's warm-up."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    height, width = module.image_size
    labels = np.zeros((1, height, width), np.int32)
    style = np.zeros((1, 64, 64, 3), np.uint8)
    values = {sig.LABEL_IDS: labels, sig.INSTANCE_IDS: labels,
              sig.SEED: np.zeros(1, np.int64), sig.STYLE_IMAGE: style}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name in module.signatures():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=name))
            for key in sig.signature_inputs(name, module.config.use_instance_edges):
                request.inputs[key].CopyFrom(tf.make_tensor_proto(values[key]))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def export_model(model_dir: str | os.PathLike, export_base: str | os.PathLike,
                 model_name: str = "spade", version: int | None = None,
                 max_batch_size: int | None = None, max_pixels: int | None = None,
                 warmup: bool = True, precision: str | None = None) -> Path:
    """Export ``model_dir`` to ``export_base/model_name/version``; returns that folder.

    ``precision`` ("float32", "bfloat16" or "float16"; default ``export.precision`` of the
    model's config) is the compute type of the served graph; see :mod:`spade_tf.precision`.
    """
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise ExportError(f"model name {model_name!r} must be a plain folder name.")
    loaded = load_model_dir(model_dir, networks=("generator", "encoder"))
    model_config = loaded.config.model
    export_config = loaded.config.export
    if loaded.generator.semantic_channels != model_config.semantic_channels:
        raise ExportError(
            f"{model_dir}: the generator takes {loaded.generator.semantic_channels} semantic "
            f"channels but its config.yaml describes {model_config.semantic_channels}.")
    if getattr(loaded.generator, "use_vae", False) and loaded.encoder is None:
        raise ExportError(f"{model_dir}: the generator is a VAE one but encoder.keras is "
                          "missing.")
    precision = precision or export_config.precision
    policy_name(precision)
    generator = with_precision(loaded.generator, precision)
    encoder = with_precision(loaded.encoder, precision) \
        if model_config.use_vae and loaded.encoder is not None else None
    model_base = Path(export_base) / model_name
    version = version if version is not None else next_version(model_base)
    if version < 1:
        raise ExportError(f"version {version}: TF Serving versions are positive integers.")
    target = model_base / str(version)
    if target.exists():
        raise ExportError(f"{target} exists already: versions are immutable; export as a "
                          "new version (omit --version) or remove it.")
    module = SpadeServingModule(
        generator, encoder, model_config,
        max_batch_size or export_config.max_batch_size, max_pixels or export_config.max_pixels)
    model_base.mkdir(parents=True, exist_ok=True)
    # Not an integer name: TF Serving ignores the folder until it is renamed.
    staging = Path(tempfile.mkdtemp(prefix=f".export-{version}-", dir=model_base))
    try:
        signature_functions = module.signatures()
        tf.saved_model.save(module, str(staging), signatures=signature_functions)
        if warmup:
            _warmup_requests(staging / sig.WARMUP_FILE, model_name, module)
        metadata = {
            "model_name": model_name, "version": version,
            "image_size": list(module.image_size), "num_classes": model_config.num_classes,
            "use_dontcare_label": model_config.use_dontcare_label,
            "dontcare_label": model_config.dontcare_label,
            "use_instance_edges": model_config.use_instance_edges,
            "use_vae": model_config.use_vae, "latent_dim": model_config.latent_dim,
            "max_batch_size": module.max_batch_size, "max_pixels": module.max_pixels,
            "precision": precision,
            "signatures": sorted(signature_functions),
        }
        (staging / sig.SPADE_METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (staging / sig.SPADE_METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide it from a server running as another user
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
