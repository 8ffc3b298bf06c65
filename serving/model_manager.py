"""Model versions on disk -> a loaded, warmed-up servable, swapped in as new versions appear.

The layout is TF Serving's: ``<model_base_path>/<integer version>/`` SavedModels, as
``spade-export`` writes them. As with TF Serving's default "latest" policy, one version is
served: the highest integer folder holding a ``saved_model.pb``. Other names (the hidden
staging folders of an export in progress, ``tmp``, ...) are ignored. A new version is
loaded and warmed up beside the current one and then swapped in under a lock; a request
keeps the :class:`ServableVersion` it started with, so a swap never fails it.

Requests are checked here the way TF Serving checks them, and every refusal is a
:class:`RequestError` carrying the gRPC status code TF Serving would answer with.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_pb2, prediction_log_pb2

from spade_tf import signatures as sig
from spade_tf.errors import readable_tf_message, strip_tf_internals

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State
SAVED_MODEL_FILE = "saved_model.pb"
# Only plain ASCII digits name a version ("12"); anything else is not a version folder.
_VERSION_NAME = re.compile(r"[0-9]+")
# TF Serving replays at most this many warm-up records.
MAX_WARMUP_RECORDS = 1000
# tf.errors codes are the canonical gRPC codes, so the number maps straight across.
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


class RequestError(Exception):
    """A request the server refuses, with the gRPC code TF Serving would answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


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
                 max_input_bytes: int = sig.MAX_MESSAGE_BYTES):
        self.model_name = model_name
        self.version = version
        self.path = Path(path)
        self.max_input_bytes = max_input_bytes
        try:
            saved = saved_model_pb2.SavedModel.FromString(
                (self.path / SAVED_MODEL_FILE).read_bytes())
            self.loaded = tf.saved_model.load(str(self.path))
        except Exception as error:  # any failure is this version's load failure
            detail = readable_tf_message(str(error))[:500]
            raise LoadError(f"{self.path}: {type(error).__name__}: {detail}") from error
        meta_graph = _select_meta_graph(saved)
        # Only callable signatures (not the "__saved_model_init_op" bookkeeping entry).
        self.signature_defs: dict[str, meta_graph_pb2.SignatureDef] = {
            name: meta_graph.signature_def[name] for name in sorted(meta_graph.signature_def)
            if name in self.loaded.signatures}
        metadata_file = self.path / sig.SPADE_METADATA_FILE
        self.metadata: dict = json.loads(metadata_file.read_text()) \
            if metadata_file.is_file() else {}

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
        try:
            result = self.loaded.signatures[name](
                **{alias: tf.constant(array) for alias, array in arrays.items()})
        except tf.errors.OpError as error:
            # The export's in-graph checks (ids out of range, sizes, batch limit) land here.
            code = _GRPC_CODES.get(error.error_code, grpc.StatusCode.INTERNAL)
            raise RequestError(code, strip_tf_internals(error.message)) from None
        return name, {alias: result[alias].numpy() for alias in outputs}

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
        path = self.path / sig.WARMUP_FILE
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


@dataclass
class VersionState:
    """What GetModelStatus reports for one version."""

    state: int
    error: str = ""


def _fingerprint(folder: Path) -> tuple[int, int]:
    """Changes when the version folder is rewritten: lets a failed load be retried then."""
    stat = (folder / SAVED_MODEL_FILE).stat()
    return stat.st_mtime_ns, stat.st_size


def model_spec_text(spec: model_pb2.ModelSpec) -> str:
    """TF Serving's wording for the servable a request asks for."""
    if spec.HasField("version"):
        return f"Specific({spec.name}, {spec.version.value})"
    return f"Latest({spec.name})"


def _reject_version_label(spec: model_pb2.ModelSpec) -> None:
    """TF Serving answers unknown version labels with INVALID_ARGUMENT; we have none."""
    if spec.WhichOneof("version_choice") == "version_label":
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Unrecognized servable version label: {spec.version_label} (this "
                           "server has no version labels; ask for a version number or the "
                           "latest)")


class ModelManager:
    """Keeps the newest version of one model loaded, polling its base path for new ones."""

    def __init__(self, base_path: str | os.PathLike, model_name: str,
                 poll_seconds: float = 2.0, max_input_bytes: int = sig.MAX_MESSAGE_BYTES,
                 on_change: Callable[[ServableVersion], None] | None = None):
        self.base_path = Path(base_path)
        self.model_name = model_name
        self.poll_seconds = poll_seconds
        self.max_input_bytes = max_input_bytes
        self._on_change = on_change
        self._current: ServableVersion | None = None
        self._lock = threading.Lock()  # guards _current and _states
        self._poll_lock = threading.Lock()  # one scan-and-load at a time
        self._states: dict[int, VersionState] = {}
        self._failed: dict[int, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- disk -----------------------------------------------------------------------

    def versions_on_disk(self) -> dict[int, Path]:
        """Integer version folders that hold a SavedModel (others are ignored)."""
        try:
            entries = list(self.base_path.iterdir())
        except OSError:
            return {}
        return {int(entry.name): entry for entry in entries
                if _VERSION_NAME.fullmatch(entry.name) and entry.is_dir()
                and (entry / SAVED_MODEL_FILE).is_file()}

    def _candidates(self) -> list[tuple[int, Path]]:
        """Versions worth loading, newest first: failed ones wait until their files change."""
        candidates = []
        for version, folder in sorted(self.versions_on_disk().items(), reverse=True):
            try:
                if self._failed.get(version) == _fingerprint(folder):
                    continue
            except OSError:
                continue  # removed while we looked
            candidates.append((version, folder))
        return candidates

    # -- loading --------------------------------------------------------------------

    def poll(self) -> ServableVersion | None:
        """Scan once and serve the newest loadable version if it is not the one served.

        A version that fails to load is logged, reported by :meth:`states` as END with its
        error, and not tried again until its files change; the version served meanwhile
        stays. With nothing served yet, older versions are tried in turn. Returns the newly
        served version, or None when nothing changed.
        """
        with self._poll_lock:
            for version, folder in self._candidates():
                current = self._current
                if current is not None and version == current.version:
                    return None
                servable = self._load(version, folder)
                if servable is not None:
                    return servable if self._swap(servable) else None
                if current is not None:
                    return None
            return None

    def _load(self, version: int, folder: Path) -> ServableVersion | None:
        try:
            fingerprint = _fingerprint(folder)
        except OSError:
            return None  # removed since the scan
        self._set_state(version, VersionState(State.LOADING))
        log.info("loading %s version %d from %s", self.model_name, version, folder)
        try:
            servable = ServableVersion(self.model_name, version, folder, self.max_input_bytes)
            warmed = servable.warm_up()
        except Exception as error:  # a bad folder is that version's failure, nothing more
            self._failed[version] = fingerprint
            self._set_state(version, VersionState(State.END, str(error)))
            log.error("could not load %s version %d: %s", self.model_name, version, error)
            return None
        size = servable.metadata.get("image_size", "?")
        log.info("loaded %s version %d (image size %s, %s classes; %d warm-up requests "
                 "replayed)", self.model_name, version, size,
                 servable.metadata.get("num_classes", "?"), warmed)
        return servable

    def _swap(self, servable: ServableVersion) -> bool:
        """Serve ``servable`` from now on; False (and nothing changes) once stopped."""
        with self._lock:
            if self._stop.is_set():  # a load that finished after stop(): never served
                self._states[servable.version] = VersionState(
                    State.END, "not served: the server stopped while it was loading")
                return False
            previous, self._current = self._current, servable
            self._states[servable.version] = VersionState(State.AVAILABLE)
            if previous is not None:
                # Requests holding the previous version finish on it; new ones get this one.
                self._states[previous.version] = VersionState(State.END)
        log.info("serving %s version %d", self.model_name, servable.version)
        if self._on_change is not None:
            self._on_change(servable)
        return True

    def _set_state(self, version: int, state: VersionState) -> None:
        with self._lock:
            self._states[version] = state

    def start_polling(self) -> None:
        if self._thread is None and self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="spade-version-poll",
                                            daemon=True)  # a load in progress must not block exit
            self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # never let the poller die: the next scan may succeed
                log.exception("polling %s failed", self.base_path)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop polling; no version is swapped in after this returns. Waits up to
        ``timeout`` seconds (None: no bound, 0: none) for a scan or load in progress;
        returns whether the poll thread has ended."""
        with self._lock:  # _swap checks the flag under this lock
            self._stop.set()
        if self._thread is None:
            return True
        if timeout != 0:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- lookups --------------------------------------------------------------------

    @property
    def current(self) -> ServableVersion | None:
        with self._lock:
            return self._current

    def servable(self, spec: model_pb2.ModelSpec) -> ServableVersion:
        """The loaded version a request's ModelSpec names (TF Serving's error codes)."""
        if not spec.name:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               "Missing model name in request (model_spec.name)")
        if spec.name != self.model_name:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: {model_spec_text(spec)}; "
                               f"this server serves model {self.model_name!r}")
        _reject_version_label(spec)
        current = self.current
        if current is None or (spec.HasField("version")
                               and spec.version.value != current.version):
            served = f"version {current.version} is served" if current else \
                "no version is loaded yet"
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: {model_spec_text(spec)}; "
                               f"{served}")
        return current

    def states(self, spec: model_pb2.ModelSpec) -> dict[int, VersionState]:
        """Version states for GetModelStatus: all known versions, or the one asked for."""
        if spec.name != self.model_name:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {spec.name!r}; "
                               f"this server serves model {self.model_name!r}")
        _reject_version_label(spec)
        with self._lock:
            states = dict(self._states)
        if spec.HasField("version"):
            version = spec.version.value
            if version not in states:
                raise RequestError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model "
                                   f"{self.model_name!r}")
            return {version: states[version]}
        return states
