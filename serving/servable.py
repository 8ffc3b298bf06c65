"""One loaded version of a model: its SavedModel, SignatureDefs and spade metadata, and the
checks TF Serving makes on a Predict request, each refusal a :class:`RequestError` with the
gRPC status code TF Serving would answer with.

:mod:`serving.model_manager` decides which versions are loaded; it re-exports these names.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving.errors import RequestError
from spade_tf import layout
from spade_tf import signatures as sig
from spade_tf.errors import readable_tf_message, strip_tf_internals

log = logging.getLogger(__name__)

# TF Serving replays at most this many warm-up records.
MAX_WARMUP_RECORDS = 1000
# tf.errors codes are the canonical gRPC codes, so the number maps straight across.
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}
# A retired version's batch threads end once its last request is answered (bounded).
_RETIRE_SECONDS = 60.0


@dataclass(frozen=True)
class ServingHooks:
    """What the server adds to every version it loads: batching (TF Serving's
    ``BatchingParameters``, or None) and metrics (a ``ServingMetrics``, or None)."""

    batching: object | None = None
    metrics: object | None = None


class LoadError(RuntimeError):
    """A version folder could not be loaded or warmed up."""


def _shape_text(dims: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _dtype_name(enum_value: int) -> str:
    try:
        return tf.dtypes.as_dtype(enum_value).name
    except TypeError:
        return f"dtype enum {enum_value}"


def _parse_input(alias: str, proto: tensor_pb2.TensorProto, info: meta_graph_pb2.TensorInfo,
                 max_bytes: int) -> np.ndarray:
    """Check ``proto`` against the signature's TensorInfo and turn it into an array."""
    if proto.dtype != info.dtype:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {alias!r} must be {_dtype_name(info.dtype)}, but the request "
                           f"has {_dtype_name(proto.dtype)}")
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in dims) or proto.tensor_shape.unknown_rank:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"tensor parsing error: {alias}: shape {_shape_text(dims)} is not "
                           "a fully defined shape")
    expected = info.tensor_shape
    if not expected.unknown_rank:
        wanted = [dim.size for dim in expected.dim]
        if len(wanted) != len(dims) or any(
                w >= 0 and w != d for w, d in zip(wanted, dims, strict=True)):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {alias!r} must have shape {_shape_text(wanted)} (-1: any "
                               f"size), but the request has {_shape_text(dims)}")
    # A tiny message can declare a huge shape (values are padded out): refuse before numpy does.
    itemsize = tf.dtypes.as_dtype(proto.dtype).size
    if math.prod(dims) * itemsize > max_bytes:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {alias!r} of shape {_shape_text(dims)} is larger than this "
                           f"server's limit of {max_bytes} bytes per input")
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError) as error:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"tensor parsing error: {alias}: {error}") from None


def _select_meta_graph(saved: saved_model_pb2.SavedModel) -> meta_graph_pb2.MetaGraphDef:
    for meta_graph in saved.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    return saved.meta_graphs[0]


class ServableVersion:
    """One loaded version: the SavedModel, its SignatureDefs and the spade metadata."""

    def __init__(self, model_name: str, version: int, path: Path,
                 max_input_bytes: int = sig.MAX_MESSAGE_BYTES,
                 hooks: ServingHooks | None = None):
        self.model_name = model_name
        self.version = version
        self.path = Path(path)
        self.max_input_bytes = max_input_bytes
        self.hooks = hooks or ServingHooks()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        try:
            saved = saved_model_pb2.SavedModel.FromString(
                (self.path / layout.SAVED_MODEL_FILE).read_bytes())
            self.loaded = tf.saved_model.load(str(self.path))
        except Exception as error:  # any failure is this version's load failure
            detail = readable_tf_message(str(error))[:500]
            raise LoadError(f"{self.path}: {type(error).__name__}: {detail}") from error
        meta_graph = _select_meta_graph(saved)
        # Only callable signatures (not the "__saved_model_init_op" bookkeeping entry).
        self.signature_defs: dict[str, meta_graph_pb2.SignatureDef] = {
            name: meta_graph.signature_def[name] for name in sorted(meta_graph.signature_def)
            if name in self.loaded.signatures}
        metadata_file = self.path / layout.SPADE_METADATA_FILE
        self.metadata: dict = json.loads(metadata_file.read_text()) \
            if metadata_file.is_file() else {}
        self._scheduler = self._batch_scheduler()

    def _batch_scheduler(self):
        """A batch scheduler for the signatures whose inputs and outputs all have the batch
        as dimension 0 (``model_info`` has not), when batching is on."""
        if self.hooks.batching is None:
            return None
        from serving.batching import BatchScheduler

        self._batched = {name for name, signature in self.signature_defs.items()
                         if all(_batch_first(info) for info in
                                [*signature.inputs.values(), *signature.outputs.values()])}
        metrics = self.hooks.metrics

        def on_batch(signature: str, size: int, queue_seconds: list[float]) -> None:
            if metrics is not None:
                metrics.observe_batch(self.model_name, signature, len(queue_seconds), size,
                                      queue_seconds)

        scheduler = BatchScheduler(self._batching_within_limit(), self._run_signature,
                                   name=f"{self.model_name}-{self.version}", on_batch=on_batch)
        if metrics is not None:
            for name in self._batched:
                metrics.queue_depth(self.model_name, name, scheduler.queue_depth)
        return scheduler

    def signature_def_map(self):
        """The SignatureDefs as the ``SignatureDefMap`` GetModelMetadata packs."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in self.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature)
        return signature_map

    def predict(self, signature_name: str, inputs: Mapping[str, tensor_pb2.TensorProto],
                output_filter: Sequence[str] = ()) -> tuple[str, dict[str, np.ndarray]]:
        """Run one request; returns the signature name used and the requested outputs."""
        name = signature_name or sig.DEFAULT_SIGNATURE
        signature = self.signature_defs.get(name)
        if signature is None:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{name}" not found; this model has '
                               f"{sorted(self.signature_defs)}")
        expected, given = set(signature.inputs), set(inputs)
        if expected != given:
            problems = []
            if expected - given:
                problems.append(f"missing {sorted(expected - given)}")
            if given - expected:
                problems.append(f"not in the signature {sorted(given - expected)}")
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"inputs of {name!r} are {sorted(expected)}: "
                               + "; ".join(problems))
        outputs = self._outputs(name, signature, output_filter)
        arrays = {alias: _parse_input(alias, inputs[alias], signature.inputs[alias],
                                      self.max_input_bytes) for alias in sorted(expected)}
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            scheduler = self._scheduler
            if scheduler is not None and name in self._batched:
                result = scheduler.submit(name, arrays)
            else:
                result = self._run_signature(name, arrays)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
        return name, {alias: result[alias] for alias in outputs}

    def _run_signature(self, name: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One run of the SavedModel's signature (a request, or a merged batch)."""
        start = time.perf_counter()
        try:
            result = self.loaded.signatures[name](
                **{alias: tf.constant(array) for alias, array in arrays.items()})
        except tf.errors.OpError as error:
            # The export's in-graph checks (ids out of range, sizes, batch limit) land here.
            code = _GRPC_CODES.get(error.error_code, grpc.StatusCode.INTERNAL)
            raise RequestError(code, strip_tf_internals(error.message)) from None
        outputs = {alias: tensor.numpy() for alias, tensor in result.items()}
        if self.hooks.metrics is not None:
            self.hooks.metrics.observe_runtime(self.model_name, "Predict",
                                               time.perf_counter() - start)
        return outputs

    def _batching_within_limit(self):
        """The batching parameters, with batches no larger than the export accepts
        (``export.max_batch_size``): a larger merged batch would fail in the graph."""
        params = self.hooks.batching
        limit = self.metadata.get("max_batch_size")
        if not isinstance(limit, int) or params.max_batch_size <= limit:
            return params
        allowed = tuple(size for size in params.allowed_batch_sizes if size < limit)
        log.info("%s version %d: batches of at most %d (the export's limit), not %d",
                 self.model_name, self.version, limit, params.max_batch_size)
        return dataclasses.replace(params, max_batch_size=limit, allowed_batch_sizes=(
            (*allowed, limit) if params.allowed_batch_sizes else ()))

    def retire(self) -> None:
        """No longer served: its batch threads end once the requests holding this version
        are answered (a request that took it before the swap still finishes on it)."""
        scheduler = self._scheduler
        if scheduler is None:
            return

        def stop_when_idle() -> None:
            deadline = time.monotonic() + _RETIRE_SECONDS
            while time.monotonic() < deadline:
                with self._in_flight_lock:
                    if self._in_flight == 0:
                        break
                time.sleep(0.05)
            self._scheduler = None  # late requests run unbatched
            scheduler.stop()

        threading.Thread(target=stop_when_idle, name="spade-retire", daemon=True).start()

    @staticmethod
    def _outputs(name: str, signature: meta_graph_pb2.SignatureDef,
                 output_filter: Sequence[str]) -> list[str]:
        if not output_filter:
            return sorted(signature.outputs)
        for alias in output_filter:
            if alias not in signature.outputs:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"output tensor alias not found in signature: {alias}. "
                                   f"Outputs of {name!r} are {sorted(signature.outputs)}")
        if len(set(output_filter)) != len(output_filter):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"duplicate output tensor alias in output_filter "
                               f"{list(output_filter)}")
        return list(output_filter)

    def warm_up(self) -> int:
        """Replay ``assets.extra/tf_serving_warmup_requests``, as TF Serving does on load."""
        path = self.path / layout.WARMUP_FILE
        if not path.is_file():
            return 0
        count = 0
        try:
            for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
                entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
                if entry.WhichOneof("log_type") != "predict_log":
                    continue  # this server only answers Predict
                request = entry.predict_log.request
                self.predict(request.model_spec.signature_name, request.inputs,
                             request.output_filter)
                count += 1
        except (RequestError, tf.errors.OpError, ValueError) as error:
            raise LoadError(f"{path}: warm-up request {count + 1} failed: {error}") from error
        return count


def _batch_first(info: meta_graph_pb2.TensorInfo) -> bool:
    """Whether a tensor's first dimension is the (open) batch dimension."""
    shape = info.tensor_shape
    return not shape.unknown_rank and len(shape.dim) >= 1 and shape.dim[0].size == -1
