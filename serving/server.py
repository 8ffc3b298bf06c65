"""The embedded model server: TF Serving's gRPC API over the versions ``spade-export`` writes.

``SpadeServer`` answers ``tensorflow.serving.PredictionService`` (Predict and
GetModelMetadata; Classify, Regress and MultiInference answer UNIMPLEMENTED, as the
generated base servicer does), ``tensorflow.serving.ModelService`` GetModelStatus and the
standard ``grpc.health.v1.Health`` service, so TF Serving clients (and
:class:`serving.client.SpadeClient`) work against either server. Error codes are TF
Serving's (see :mod:`serving.model_manager`); a bad request is answered with its code and
never stops the server.

    server = SpadeServer("exports/spade", "spade", port=0)
    port = server.start()
    ...
    server.stop(grace=5).wait()
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import TypeVar

import grpc
import tensorflow as tf
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.base_path import ServerStartError, check_model_base_path
from serving.metrics import MonitoringConfig, ServingMetrics, observed
from serving.model_manager import LabelError, RequestError, ServableVersion, ServingHooks
from serving.registry import ModelRegistry
from serving.rest import DEFAULT_MAX_BODY_BYTES, RestApi, RestServer, RestServerError
from spade_tf import signatures as sig
from spade_tf.errors import strip_tf_internals

log = logging.getLogger(__name__)

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
DEFAULT_WORKERS = 8
# The painter page, served at / of the REST port.
PAINTER = Path(__file__).resolve().parent / "painter"

T = TypeVar("T")
# The longest stop() waits for a version load in progress (a load finishing later is
# dropped, never swapped in).
POLL_STOP_SECONDS = 5.0


def _answer(context: grpc.ServicerContext, handler: Callable[[], T]) -> T:
    """Run ``handler``; a refusal becomes its status code, a bug becomes INTERNAL."""
    try:
        return handler()
    except RequestError as error:
        code, message = error.code, error.message
    except Exception as error:  # one request's bug must not take the server down
        log.exception("request failed")
        code = grpc.StatusCode.INTERNAL
        message = f"{type(error).__name__}: {strip_tf_internals(str(error))}"
    context.abort(code, message)  # raises


def _fill_model_spec(spec, servable: ServableVersion, signature_name: str | None = None) -> None:
    spec.name = servable.model_name
    spec.version.value = servable.version
    if signature_name is not None:
        spec.signature_name = signature_name


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; the other methods stay UNIMPLEMENTED."""

    def __init__(self, manager: ModelRegistry, metrics=None):
        self._manager = manager
        self._metrics = metrics

    def Predict(self, request: predict_pb2.PredictRequest,  # noqa: N802 (gRPC's name)
                context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        with observed(self._metrics, spec.name, spec.signature_name or sig.DEFAULT_SIGNATURE,
                      "GRPC", context):
            return self._predict(request, context)

    def _predict(self, request: predict_pb2.PredictRequest,
                 context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        def handle() -> predict_pb2.PredictResponse:
            # Holding this reference keeps the version alive across a concurrent swap.
            servable = self._manager.servable(request.model_spec)
            signature_name, outputs = servable.predict(
                request.model_spec.signature_name, request.inputs, request.output_filter)
            response = predict_pb2.PredictResponse()
            _fill_model_spec(response.model_spec, servable, signature_name)
            for alias, array in outputs.items():
                response.outputs[alias].CopyFrom(tf.make_tensor_proto(array))
            return response

        return _answer(context, handle)

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,  # noqa: N802
                         context: grpc.ServicerContext,
                         ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        def handle() -> get_model_metadata_pb2.GetModelMetadataResponse:
            if not request.metadata_field:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "GetModelMetadataRequest must specify at least one "
                                   f"metadata_field (supported: {sig.SIGNATURE_DEF_FIELD!r})")
            for field in request.metadata_field:
                if field != sig.SIGNATURE_DEF_FIELD:
                    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"Metadata field {field} is not supported")
            servable = self._manager.servable(request.model_spec)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            _fill_model_spec(response.model_spec, servable)
            response.metadata[sig.SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map())
            return response

        return _answer(context, handle)


class ModelStatusServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus; HandleReloadConfigRequest stays UNIMPLEMENTED (one model, from flags)."""

    def __init__(self, manager: ModelRegistry):
        self._manager = manager

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,  # noqa: N802
                       context: grpc.ServicerContext,
                       ) -> get_model_status_pb2.GetModelStatusResponse:
        def handle() -> get_model_status_pb2.GetModelStatusResponse:
            response = get_model_status_pb2.GetModelStatusResponse()
            for version, state in sorted(self._manager.states(request.model_spec).items(),
                                         reverse=True):
                entry = response.model_version_status.add(version=version, state=state.state)
                if state.error:
                    entry.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                    entry.status.error_message = state.error
            return response

        return _answer(context, handle)


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class SpadeServer:
    """Models served over gRPC (and REST); new versions on disk are picked up while serving.

    Args:
        model_base_path: the folder holding the integer version folders
            (``<export_base>/<model_name>``); None with ``model_config``.
        model_name: the name requests must use in ``model_spec.name``.
        port: the port to listen on; 0 picks a free one (``start`` returns it).
        host: the interface; loopback unless another one is asked for.
        poll_seconds: how often to look for new versions (0: never).
        workers: requests served at once, per API (gRPC threads; REST predictions).
        max_message_bytes: gRPC send and receive limit, and the largest input accepted.
        rest_port: TF Serving's REST API on this port too (0 picks a free one; None: off),
            with the painter page (``static_dir``) at ``/``.
        cors_origin: an origin allowed to call the REST API from another site's page.
        max_body_bytes: the largest REST request body, refused before it is read.
        model_config: TF Serving's ``models.config`` (a path, or the entries of
            :func:`serving.model_config.load_model_config`) instead of one base path:
            several models, version policies and labels.
        batching: TF Serving's batching parameters
            (:func:`serving.batching.load_batching_parameters`), or None: no batching.
        monitoring: TF Serving's monitoring config
            (:func:`serving.metrics.load_monitoring_config`): Prometheus metrics on the
            REST port when it enables them.
        rest_max_queued, rest_body_timeout: see :class:`serving.rest.RestServer`.
    """

    def __init__(self, model_base_path: str | os.PathLike | None = None,
                 model_name: str = "spade",
                 port: int = sig.DEFAULT_GRPC_PORT, host: str = sig.DEFAULT_HOST,
                 poll_seconds: float = 2.0,
                 workers: int = DEFAULT_WORKERS,
                 max_message_bytes: int = sig.MAX_MESSAGE_BYTES,
                 rest_port: int | None = None, static_dir: str | os.PathLike | None = PAINTER,
                 cors_origin: str | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 model_config=None, batching=None, monitoring: MonitoringConfig | None = None,
                 rest_max_queued: int = sig.REST_MAX_QUEUED,
                 rest_body_timeout: float = sig.REST_BODY_TIMEOUT_SECONDS):
        if workers < 1:
            raise ValueError(f"workers={workers}: expected at least 1")
        if (model_base_path is None) == (model_config is None):
            raise ValueError("give model_base_path or model_config (not both)")
        self.model_base_path = Path(model_base_path) if model_base_path is not None else None
        self.host = host
        self.port = port
        self.workers = workers
        self.max_message_bytes = max_message_bytes
        self.health = health.HealthServicer()
        self.metrics = ServingMetrics() if monitoring is not None \
            and monitoring.prometheus_enabled else None
        hooks = ServingHooks(batching=batching, metrics=self.metrics)
        if model_config is None:
            self.registry = ModelRegistry.single(self.model_base_path, model_name, poll_seconds,
                                                 max_message_bytes, self._version_changed,
                                                 hooks=hooks)
        elif isinstance(model_config, str | os.PathLike):
            self.registry = ModelRegistry.from_config(model_config, poll_seconds,
                                                      max_message_bytes, self._version_changed,
                                                      hooks=hooks)
        else:
            self.registry = ModelRegistry.from_entries(model_config, poll_seconds,
                                                       max_message_bytes,
                                                       self._version_changed, hooks=hooks)
        self.model_name = self.registry.model_names[0]
        # The first model's manager, for code (and tests) written for one model.
        self.manager = self.registry.manager(self.model_name)
        self._server: grpc.Server | None = None
        self._stopped = threading.Event()
        # TF Serving's REST API (and the painter page at /) beside gRPC; None: off.
        self.rest = None
        if rest_port is not None:
            metrics = self.metrics
            self.rest = RestServer(
                self.registry, host=host, port=rest_port, max_body_bytes=max_body_bytes,
                static_dir=static_dir, cors_origin=cors_origin, workers=workers,
                max_queued=rest_max_queued, body_timeout=rest_body_timeout,
                metrics_path=monitoring.prometheus_path if metrics else None,
                metrics=metrics.exposition if metrics else None,
                api=RestApi(self.registry, metrics))
            if metrics is not None:
                metrics.rest_queue_depth(lambda: self.rest.app.queued)

    @property
    def address(self) -> str:
        return _bind_address(self.host, self.port)

    def _version_changed(self, servable: ServableVersion) -> None:
        for service in ("", PREDICTION_SERVICE, MODEL_SERVICE):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def start(self) -> int:
        """Bind, load the newest version, start answering, and return the port.

        Raises :class:`ServerStartError` when the port cannot be bound (before any loading)
        or when versions exist and none of them loads. With no version yet, the server
        starts, answers NOT_FOUND and reports NOT_SERVING until one appears.
        """
        if self._server is not None:
            raise ServerStartError("this server was started already")
        for name, manager in self.registry.managers.items():
            check_model_base_path(manager.base_path, name)
        server = self._build_grpc_server()
        try:
            self.port = server.add_insecure_port(self.address)
        except RuntimeError:  # gRPC says only "Failed to bind to address ..."
            raise ServerStartError(
                f"cannot listen on {self.address}: the port is in use (another spade-serve or "
                "TF Serving?) or the host is not an address of this machine; stop the other "
                "server or choose another --port (0 picks a free one).") from None
        if self.rest is not None:
            try:  # before loading: a taken REST port fails at once too
                self.rest.bind()
            except RestServerError as error:
                server.stop(None)
                raise ServerStartError(str(error)) from None
        for service in ("", PREDICTION_SERVICE, MODEL_SERVICE):
            self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            self.registry.poll()  # like TF Serving: load first, then answer
            failed = self.registry.not_serving()
            if failed:
                name = sorted(failed)[0]
                version = max(failed[name])
                which = f"version {version}" if len(self.registry.model_names) == 1 \
                    else f"version {version} of model {name!r}"
                raise ServerStartError(
                    f"could not load {which}: {failed[name][version]}; export it again "
                    "(spade-export) or remove it.")
        except (ServerStartError, LabelError) as error:
            server.stop(None)
            if self.rest is not None:
                self.rest.stop()
            self.registry.stop(timeout=0)
            raise ServerStartError(str(error)) from None
        for name, manager in self.registry.managers.items():
            if manager.current is None:
                log.warning("no version of %s under %s yet; waiting for one", name,
                            manager.base_path)
        server.start()
        if self.rest is not None:
            self.rest.start()
        self._server = server
        self.registry.start_polling()
        current = self.manager.current
        log.debug("serving model %r (version %s) on %s", self.model_name,
                 current.version if current else "none yet", self.address)
        return self.port

    def _build_grpc_server(self) -> grpc.Server:
        options = [("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.max_receive_message_length", self.max_message_bytes),
                   # gRPC sets SO_REUSEPORT by default: a second server on a taken port would
                   # silently share it instead of failing.
                   ("grpc.so_reuseport", 0)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.workers,
                                                        thread_name_prefix="spade-serve"),
                             options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.registry, self.metrics), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelStatusServicer(self.registry), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        return server

    def stop(self, grace: float | None = 5.0) -> threading.Event:
        """Stop accepting requests; in-flight ones get ``grace`` seconds to finish.

        Returns an event set once the server has stopped; calling it again is harmless.
        """
        self.health.enter_graceful_shutdown()  # health checks answer NOT_SERVING from now
        if self.rest is not None:
            self.rest.stop(timeout=grace or 1.0)  # bounded; in-flight requests finish
        # Waits for a load in progress (bounded); one finishing later is not swapped in.
        self.registry.stop(timeout=POLL_STOP_SECONDS)
        if self._server is None:
            self._stopped.set()
            return self._stopped
        done = self._server.stop(grace)

        def mark_stopped() -> None:
            done.wait()
            self._stopped.set()

        threading.Thread(target=mark_stopped, name="spade-serve-stop", daemon=True).start()
        return self._stopped

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped; False if ``timeout`` ran out first."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> SpadeServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop(grace=1.0).wait(10)
