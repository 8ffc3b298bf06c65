"""Export a trained model folder as a SavedModel that TensorFlow Serving loads as is.

``export_model(model_dir, export_base, model_name)`` writes
``<export_base>/<model_name>/<version>/`` with the signatures of
:mod:`spade_tf.signatures`. Label maps go in as compact integer ids and are turned into
the one-hot semantic input (plus instance edges) inside the graph, where ids out of range
fail with a message naming the id; images come out as uint8. The version folder is
written under a hidden name and renamed when complete, so a polling server never sees
half an export, and it carries ``assets.extra/tf_serving_warmup_requests`` so the first
real request does not pay for graph warm-up. The architecture comes from the saved
model folder (the ``.keras`` networks and the ``config.yaml`` saved with them; with a
``checkpoint``, from ``config.yaml`` alone, the weights from that training checkpoint).
"""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from spade_tf import layout
from spade_tf import signatures as sig
from spade_tf.atomic import TargetExists, atomic_directory, write_text
from spade_tf.backend import require_tensorflow
from spade_tf.errors import SpadeError, readable_tf_message
from spade_tf.export_metadata import ExportMetadata
from spade_tf.inference_loader import load_for_inference
from spade_tf.inference_rules import photo_to_unit, style_latent, to_uint8
from spade_tf.layers.semantic import semantic_one_hot
from spade_tf.precision import resolve_precision

# The served SavedModel is TensorFlow's; a folder made on another backend exports here.
require_tensorflow("Export (spade_tf.export)")


class ExportError(SpadeError, ValueError):
    """The model folder cannot be exported (or the target is unusable)."""


def _spec(name: str) -> tf.TensorSpec:
    dtype, shape = sig.INPUT_SPECS[name]
    return tf.TensorSpec(list(shape), tf.dtypes.as_dtype(dtype), name=name)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_GRAYSCALE = 0  # IHDR colour type


class SpadeServingModule(tf.Module):
    """The served computation around the generator (and the encoder of VAE models)."""

    def __init__(self, generator, encoder, model_config, max_batch_size: int,
                 max_pixels: int):
        super().__init__(name="spade_serving")
        # Not tracked: the checkpoint holds each weight once, through tf_variables below.
        # (Tracked, the Keras networks saved every weight a second time, doubling the
        # export's size and the memory of whatever serves it.)
        object.__setattr__(self, "generator", generator)
        object.__setattr__(self, "encoder", encoder)
        self.config = model_config
        self.max_batch_size = max_batch_size
        self.max_pixels = max_pixels
        self.image_size = tuple(model_config.image_size)
        # What model_info returns: set by export_model before the signatures are traced.
        self.metadata_json = "{}"
        self._network_functions()
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

    def _decode_id_png(self, png, what: str):
        """One PNG of ids (8- or 16-bit grayscale, the model's size) -> int32 [H, W]."""
        height, width = self.image_size
        # IHDR: bit depth at byte 24, colour type at 25; padding keeps short input in range.
        header = tf.io.decode_raw(tf.strings.substr(png + b"\0" * 32, 0, 26), tf.uint8)
        is_png = tf.equal(tf.strings.substr(png + b"\0" * 8, 0, 8), PNG_MAGIC)
        depth, colour = tf.cast(header[24], tf.int32), tf.cast(header[25], tf.int32)
        checks = [
            tf.debugging.Assert(is_png, [f"{what} is not a PNG file: send the map as PNG "
                                         "bytes"]),
            tf.debugging.Assert(tf.logical_or(tf.logical_not(is_png),
                                              tf.equal(colour, PNG_GRAYSCALE)),
                                [f"{what} is a colour or palette PNG: send a single-channel "
                                 "grayscale PNG of class ids (8- or 16-bit)"]),
            tf.debugging.Assert(tf.logical_or(tf.logical_not(is_png),
                                              tf.logical_or(tf.equal(depth, 8),
                                                            tf.equal(depth, 16))),
                                [f"{what} must be an 8- or 16-bit grayscale PNG; its bit "
                                 "depth is", depth]),
        ]
        with tf.control_dependencies(checks):
            ids = tf.cond(tf.equal(depth, 16),
                          lambda: tf.cast(tf.io.decode_png(png, 1, tf.uint16), tf.int32),
                          lambda: tf.cast(tf.io.decode_png(png, 1, tf.uint8), tf.int32))[..., 0]
        size = tf.debugging.assert_equal(
            tf.shape(ids), tf.constant([height, width]),
            message=f"{what} must be {width}x{height} (this model's image size); resize the "
                    "label map with nearest neighbour first")
        with tf.control_dependencies([size]):
            return tf.identity(ids)

    def _decode_id_pngs(self, pngs, what: str):
        with tf.control_dependencies([self._check_batch(pngs, what)]):
            return tf.map_fn(lambda png: self._decode_id_png(png, what), pngs,
                             fn_output_signature=tf.int32)

    def _style_latents_from_files(self, photos):
        """One encoded style per photo file (PNG or JPEG; sizes may differ)."""
        def one(photo_bytes):
            photo = tf.io.decode_image(photo_bytes, channels=3, expand_animations=False)
            return self.encode(photo[tf.newaxis])[sig.MEAN][0]

        return tf.map_fn(one, photos, fn_output_signature=tf.float32)

    def png(self, label_png_bytes, instance_png_bytes=None, seed=None,
            style_png_bytes=None) -> dict:
        label_png, instance_png, style_png = label_png_bytes, instance_png_bytes, style_png_bytes
        labels = self._decode_id_pngs(label_png, sig.LABEL_PNG)
        instances = None if instance_png is None else self._decode_id_pngs(instance_png,
                                                                           sig.INSTANCE_PNG)
        latent = None
        if seed is not None:
            latent = self.seeded_latent(labels, seed)
        elif style_png is not None:
            check = tf.debugging.assert_equal(tf.shape(style_png)[0], tf.shape(labels)[0],
                                              message=f"one {sig.STYLE_PNG} per label map")
            with tf.control_dependencies([check]):
                latent = self._style_latents_from_files(style_png)
        image = self._generate(self._semantic(labels, instances), latent)[sig.IMAGE]
        return {sig.IMAGE_PNG: tf.map_fn(tf.io.encode_png, image,
                                         fn_output_signature=tf.string)}

    def model_info(self, request) -> dict:
        del request  # any values: TF Serving's REST API needs an input to send
        return {sig.METADATA_JSON: tf.constant(self.metadata_json)}

    def seeded_latent(self, label_ids, seed):
        check = tf.debugging.assert_equal(tf.shape(seed)[0], tf.shape(label_ids)[0],
                                          message=f"one {sig.SEED} per label map")
        with tf.control_dependencies([check]):
            return style_latent(self.encoder, self.config.latent_dim, None, seeds=seed)

    def _generate(self, semantic, latent=None) -> dict:
        if self.encoder is None:
            return {sig.IMAGE: self._images(semantic)}
        if latent is None:  # a random style (see spade_tf.inference_rules)
            latent = style_latent(self.encoder, self.config.latent_dim, tf.shape(semantic)[0])
        return {sig.IMAGE: self._images(semantic, latent)}

    def _network_functions(self) -> None:
        """The generator and encoder each as one tf.function that every signature calls:
        traced (and stored in the SavedModel) once, not once per signature."""
        height, width = self.image_size
        semantic = tf.TensorSpec([None, height, width, self.config.semantic_channels],
                                 tf.float32)
        if self.encoder is None:
            self._images = tf.function(
                lambda semantic: to_uint8(self.generator({"semantic": semantic},
                                                         training=False)),
                input_signature=[semantic])
            return
        self._images = tf.function(
            lambda semantic, latent: to_uint8(self.generator(
                {"semantic": semantic, "latent": latent}, training=False)),
            input_signature=[semantic, tf.TensorSpec([None, self.config.latent_dim],
                                                     tf.float32)])
        self._encoded = tf.function(lambda photo: self.encoder(photo, training=False),
                                    input_signature=[tf.TensorSpec([None, None, None, 3],
                                                                   tf.float32)])

    def encode(self, style_image) -> dict:
        with tf.control_dependencies(self._check_style(style_image)):
            photo = photo_to_unit(style_image)
        encoded = self._encoded(photo)
        return {sig.MEAN: encoded["mean"], sig.LOG_VARIANCE: encoded["log_variance"]}

    def default(self, label_ids, instance_ids=None) -> dict:
        return self._generate(self._semantic(label_ids, instance_ids))

    def seeded(self, label_ids, seed, instance_ids=None) -> dict:
        return self._generate(self._semantic(label_ids, instance_ids),
                              self.seeded_latent(label_ids, seed))

    def styled(self, label_ids, style_image, instance_ids=None) -> dict:
        check = tf.debugging.assert_equal(tf.shape(style_image)[0], tf.shape(label_ids)[0],
                                          message=f"one {sig.STYLE_IMAGE} per label map")
        with tf.control_dependencies([check]):
            latent = self.encode(style_image)[sig.MEAN]
        return self._generate(self._semantic(label_ids, instance_ids), latent)

    # -- signatures -----------------------------------------------------------------

    # Which method computes each signature; each takes the signature's inputs by name.
    _HANDLERS = {
        sig.DEFAULT_SIGNATURE: "default", sig.SEEDED_SIGNATURE: "seeded",
        sig.STYLE_SIGNATURE: "styled", sig.ENCODE_SIGNATURE: "encode",
        sig.PNG_SIGNATURE: "png", sig.PNG_SEEDED_SIGNATURE: "png",
        sig.PNG_STYLE_SIGNATURE: "png", sig.MODEL_INFO_SIGNATURE: "model_info",
    }

    def signatures(self) -> dict:
        """Concrete functions, generated from :data:`spade_tf.signatures.SIGNATURES`,
        whose argument names are the signatures' input names."""
        functions = {}
        for name in self.signature_names():
            inputs = sig.signature_inputs(name, self.config.use_instance_edges)
            function = _named_arguments(getattr(self, self._HANDLERS[name]), inputs)
            functions[name] = tf.function(
                function, input_signature=[_spec(key) for key in inputs]
            ).get_concrete_function()
        return functions

    def signature_names(self) -> list[str]:
        """The names :meth:`signatures` gives, without tracing anything."""
        return sig.signature_names(use_vae=self.encoder is not None)


def _named_arguments(method, names: tuple[str, ...]):
    """``method`` called with keyword arguments ``names``, as a function whose positional
    parameters carry those names (TensorFlow names a signature's inputs after them)."""
    def call(*args):
        return method(**dict(zip(names, args, strict=True)))

    call.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names])
    call.__name__ = method.__name__
    return call


def _check_limit(option: str, value: int | None, meaning: str) -> None:
    """A limit given by the caller must be a positive integer (0 is not "the default")."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ExportError(f"{option} {value!r}: {meaning} must be a positive integer (omit "
                          "it for the model config's export settings); an export with this "
                          "limit would refuse every request.")


def _check_target_folders(export_base: Path, model_name: str, version: int | None) -> Path:
    """Refuse an unusable export base, model name or version before any loading; returns
    ``export_base / model_name``."""
    if (not model_name or model_name.startswith(".")
            or any(char in model_name for char in "/\\" + os.sep)):
        raise ExportError(f"model name {model_name!r} must be a plain folder name (no '/', "
                          "not starting with '.'): it names the folder under --export-base "
                          "and the model that requests ask for.")
    if version is not None and (isinstance(version, bool) or version < 1):
        raise ExportError(f"version {version}: TF Serving versions are positive integers "
                          "(omit --version for the next free one).")
    model_base = export_base / model_name
    for folder in (export_base, model_base):
        if folder.exists() and not folder.is_dir():
            raise ExportError(f"{folder} exists and is not a folder: give --export-base a "
                              "folder (it is created when missing).")
    if version is not None and (model_base / str(version)).exists():
        raise ExportError(f"{model_base / str(version)} exists already: versions are "
                          "immutable; export as a new version (omit --version) or remove it.")
    return model_base


def _warmup_requests(path: Path, model_name: str, module: SpadeServingModule) -> None:
    """A few PredictionLog records (one per signature) for TF Serving's warm-up."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    height, width = module.image_size
    labels = np.zeros((1, height, width), np.int32)
    # Within the export's pixel limit, or the warm-up would fail the version's load.
    side = max(1, min(64, math.isqrt(module.max_pixels)))
    style = np.zeros((1, side, side, 3), np.uint8)
    label_png = tf.io.encode_png(labels[0, :, :, np.newaxis].astype(np.uint8)).numpy()
    style_png = tf.io.encode_png(style[0]).numpy()
    values = {sig.LABEL_IDS: labels, sig.INSTANCE_IDS: labels,
              sig.SEED: np.zeros(1, np.int64), sig.STYLE_IMAGE: style,
              sig.LABEL_PNG: np.array([label_png], object),
              sig.INSTANCE_PNG: np.array([label_png], object),
              sig.STYLE_PNG: np.array([style_png], object),
              sig.MODEL_INFO_REQUEST: np.zeros(1, np.int32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name in module.signature_names():
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
                 warmup: bool = True, precision: str | None = None,
                 checkpoint: str | int | None = None, weights: str | None = None) -> Path:
    """Export ``model_dir`` to ``export_base/model_name/version``; returns that folder.

    ``precision`` ("float32", "bfloat16" or "float16"; default ``export.precision`` of the
    model's config) is the compute type of the served graph; see :mod:`spade_tf.precision`.
    ``checkpoint`` ("latest" or a step of ``model_dir/checkpoints``) exports that training
    checkpoint's weights instead of the last finished epoch's ``.keras`` networks.
    ``weights``: "ema" (the averaged generator, ``generator_ema.keras``), "raw" (the trained
    one) or None: the averaged one where the folder has it; the metadata's ``weights`` says
    which was exported.
    """
    # Every argument is checked before the (slow) loading, and nothing is written until
    # the model has loaded: a mistake costs seconds and leaves no trace on disk.
    _check_limit("--max-batch-size", max_batch_size, "the largest batch a request may carry")
    _check_limit("--max-pixels", max_pixels, "the largest style image, in pixels,")
    model_base = _check_target_folders(Path(export_base), model_name, version)
    # Spectral norm folded into fixed kernels, weights stored at the served precision
    # (an unknown precision fails before the loading).
    loaded = load_for_inference(model_dir, precision, checkpoint=checkpoint, weights=weights)
    model_config = loaded.config.model
    export_config = loaded.config.export
    precision = resolve_precision(precision, loaded.config)  # what load_for_inference used
    if loaded.generator.semantic_channels != model_config.semantic_channels:
        raise ExportError(
            f"{model_dir}: the generator takes {loaded.generator.semantic_channels} semantic "
            f"channels but its config.yaml describes {model_config.semantic_channels}.")
    if getattr(loaded.generator, "use_vae", False) and loaded.encoder is None:
        raise ExportError(f"{model_dir}: the generator is a VAE one but "
                          f"{layout.encoder_file(loaded.weights)} is missing.")
    generator = loaded.generator
    encoder = loaded.encoder if model_config.use_vae else None
    version = version if version is not None else layout.next_version(model_base)
    target = model_base / str(version)
    if target.exists():
        raise ExportError(f"{target} exists already: versions are immutable; export as a "
                          "new version (omit --version) or remove it.")
    module = SpadeServingModule(
        generator, encoder, model_config,
        export_config.max_batch_size if max_batch_size is None else int(max_batch_size),
        export_config.max_pixels if max_pixels is None else int(max_pixels))
    metadata = ExportMetadata.of_model(
        loaded.config, model_name=model_name, version=version,
        max_batch_size=module.max_batch_size, max_pixels=module.max_pixels,
        precision=precision, signatures=tuple(module.signature_names()),
        weights=loaded.weights)
    module.metadata_json = metadata.to_json()
    # Folders this export creates, removed again if it fails (an existing one is kept).
    created = [folder for folder in (model_base, *model_base.parents) if not folder.exists()]
    try:
        # Staged under a name that is not an integer: TF Serving ignores the folder until
        # it is renamed into place.
        with atomic_directory(target, staging_prefix=f".export-{version}-") as staging:
            try:
                tf.saved_model.save(module, str(staging), signatures=module.signatures())
                if warmup:
                    _warmup_requests(staging / layout.WARMUP_FILE, model_name, module)
            except tf.errors.OpError as error:  # e.g. the disk is full
                raise ExportError(f"writing {staging} failed: "
                                  f"{readable_tf_message(error.message)}") from None
            write_text(staging / layout.SPADE_METADATA_FILE, metadata.to_json(indent=2))
    except TargetExists:
        _remove_empty(created)
        raise ExportError(f"{target} was written by another export meanwhile; run the "
                          "export again for the next free version.") from None
    except OSError as error:
        _remove_empty(created)
        raise ExportError(f"cannot write under {model_base}: {error.strerror or error}; "
                          "choose an --export-base you can write to.") from None
    except BaseException:
        _remove_empty(created)
        raise
    return target


def _remove_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or gone): its parents are not empty either
