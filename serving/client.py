"""A Python client for spade-tf models behind ``spade-serve`` or TensorFlow Serving.

Built on the stock ``tensorflow.serving`` stubs, with the gRPC message limits raised (a
batch of images is over Python gRPC's 4 MiB default), a deadline on every call, and
retries with exponential backoff on UNAVAILABLE only (the server is starting or
restarting; any other error is the request's and is raised at once).

    with SpadeClient("127.0.0.1:8500") as client:
        image = client.synthesize(label_map, instance_map, seed=3)   # uint8 [H, W, 3]
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from spade_tf import signatures as sig
from spade_tf.errors import SpadeError, readable_tf_message


class ServingError(SpadeError):
    """The server refused or failed a call; ``code`` is the gRPC status code, ``message``
    the server's details as sent, ``str()`` the code and their readable form."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {readable_tf_message(message)}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Prediction:
    """A Predict answer: the outputs and which version and signature produced them."""

    outputs: dict[str, np.ndarray]
    model_name: str
    version: int
    signature_name: str


def _integer_map(values, what: str) -> np.ndarray:
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        raise ValueError(f"{what} must hold integer ids, got dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise ValueError(f"{what} must be [H, W] or [batch, H, W], got shape {array.shape}")
    if array.size and (array.min() < np.iinfo(np.int32).min
                       or array.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{what} has ids outside the int32 range")
    return array.astype(np.int32)


class SpadeClient:
    """Calls one model on a TF Serving-compatible server.

    Args:
        target: ``host:port`` of the server.
        model_name: the served model's name.
        timeout: deadline of each call, in seconds.
        retries: further attempts after an UNAVAILABLE answer.
        backoff: the first wait between attempts, doubled after each.
        max_message_bytes: the channel's send and receive limits.
        total_timeout: if given, the most seconds one method may take, retries and their
            waits included (a command-line tool's promise to its user).
    """

    def __init__(self, target: str, model_name: str = "spade", timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.5,
                 max_message_bytes: int = sig.MAX_MESSAGE_BYTES,
                 total_timeout: float | None = None):
        self.target = target
        self.model_name = model_name
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.total_timeout = total_timeout
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ])
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    # -- plumbing -------------------------------------------------------------------

    def _call(self, method, request):
        """One RPC with a deadline, retried on UNAVAILABLE with exponential backoff."""
        attempt = 0
        deadline = None if self.total_timeout is None else \
            time.monotonic() + self.total_timeout
        while True:
            timeout = self.timeout if deadline is None else \
                max(0.001, min(self.timeout, deadline - time.monotonic()))
            try:
                return method(request, timeout=timeout)
            except grpc.RpcError as error:
                code = error.code()
                wait = self.backoff * 2 ** attempt
                out_of_time = deadline is not None and time.monotonic() + wait >= deadline
                if code != grpc.StatusCode.UNAVAILABLE or attempt >= self.retries or out_of_time:
                    raise ServingError(code, error.details() or "") from None
            time.sleep(wait)
            attempt += 1

    def _model_spec(self, version: int | None, signature_name: str = "") -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature_name)
        if version is not None:
            spec.version.value = version
        return spec

    # -- generic calls --------------------------------------------------------------

    def predict(self, inputs: Mapping[str, np.ndarray],
                signature_name: str = sig.DEFAULT_SIGNATURE, version: int | None = None,
                output_filter: Sequence[str] = ()) -> Prediction:
        """Run any signature on numpy inputs."""
        request = predict_pb2.PredictRequest(
            model_spec=self._model_spec(version, signature_name), output_filter=output_filter)
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._prediction.Predict, request)
        return Prediction(
            outputs={alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()},
            model_name=response.model_spec.name, version=response.model_spec.version.value,
            signature_name=response.model_spec.signature_name)

    def metadata(self, version: int | None = None) -> dict:
        """The served version and its signatures: ``{"name", "version", "signatures"}``.

        ``signatures`` maps each signature name to ``{"inputs": {alias: (dtype, shape)},
        "outputs": {...}}`` with dtype names such as ``"int32"`` and -1 for any size.
        """
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._model_spec(version), metadata_field=[sig.SIGNATURE_DEF_FIELD])
        response = self._call(self._prediction.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[sig.SIGNATURE_DEF_FIELD].Unpack(signature_map)

        def describe(infos) -> dict:
            return {alias: (tf.dtypes.as_dtype(info.dtype).name,
                            [dim.size for dim in info.tensor_shape.dim])
                    for alias, info in sorted(infos.items())}

        return {
            "name": response.model_spec.name,
            "version": response.model_spec.version.value,
            "signatures": {name: {"inputs": describe(signature.inputs),
                                  "outputs": describe(signature.outputs)}
                           for name, signature in sorted(signature_map.signature_def.items())},
        }

    def status(self, version: int | None = None) -> dict[int, str]:
        """Version -> state name (``"AVAILABLE"``, ``"LOADING"``, ``"END"``, ...)."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self._model_spec(version))
        response = self._call(self._models.GetModelStatus, request)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return {entry.version: state_name(entry.state)
                for entry in response.model_version_status}

    # -- SPADE ----------------------------------------------------------------------

    def synthesize(self, label_map, instance_map=None, seed: int | None = None,
                   style_image=None, version: int | None = None) -> np.ndarray:
        """Label map [H, W] (or [B, H, W]) -> uint8 image [H, W, 3] (or [B, H, W, 3]).

        Without ``seed`` or ``style_image`` the default signature runs (a random style for
        VAE models); ``seed`` picks a reproducible style, ``style_image`` (uint8
        [h, w, 3], or one per label map) copies a photo's style. ``instance_map`` is
        needed exactly when the model uses instance edges.
        """
        if seed is not None and style_image is not None:
            raise ValueError("give a seed or a style image, not both")
        labels = _integer_map(label_map, "label_map")
        batched = labels.ndim == 3
        if not batched:
            labels = labels[np.newaxis]
        inputs = {sig.LABEL_IDS: labels}
        if instance_map is not None:
            instances = _integer_map(instance_map, "instance_map")
            inputs[sig.INSTANCE_IDS] = instances if batched else instances[np.newaxis]
        signature = sig.DEFAULT_SIGNATURE
        if seed is not None:
            signature = sig.SEEDED_SIGNATURE
            inputs[sig.SEED] = np.full([len(labels)], seed, np.int64)
        elif style_image is not None:
            signature = sig.STYLE_SIGNATURE
            style = self._style_batch(style_image)
            if len(style) == 1 and len(labels) > 1:
                style = np.repeat(style, len(labels), axis=0)
            inputs[sig.STYLE_IMAGE] = style
        image = self.predict(inputs, signature, version, output_filter=[sig.IMAGE])
        pixels = image.outputs[sig.IMAGE]
        return pixels if batched else pixels[0]

    def encode_style(self, image, version: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Photo uint8 [h, w, 3] (or [B, h, w, 3]) -> (mean, log_variance) of its style."""
        style = self._style_batch(image)
        result = self.predict({sig.STYLE_IMAGE: style}, sig.ENCODE_SIGNATURE, version)
        mean, log_variance = result.outputs[sig.MEAN], result.outputs[sig.LOG_VARIANCE]
        if np.asarray(image).ndim == 3:
            return mean[0], log_variance[0]
        return mean, log_variance

    @staticmethod
    def _style_batch(image) -> np.ndarray:
        style = np.asarray(image)
        if style.dtype != np.uint8:
            raise ValueError(f"style images must be uint8 RGB, got dtype {style.dtype}")
        if style.ndim == 3:
            style = style[np.newaxis]
        if style.ndim != 4 or style.shape[-1] != 3:
            raise ValueError(f"a style image must be [h, w, 3] (or [batch, h, w, 3]), got "
                             f"shape {np.asarray(image).shape}")
        return style

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SpadeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
