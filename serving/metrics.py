"""TF Serving's Prometheus metrics: its ``--monitoring_config_file`` and the metrics it exports.

:func:`load_monitoring_config` reads TF Serving's MonitoringConfig text file, e.g.
``prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }``, with the
message built from TF Serving's monitoring_config.proto (field names and numbers kept).
:class:`ServingMetrics` records what a server does and renders it for the REST port.

The names are TF Serving's (its ``/a/b/c`` metric names exported as ``:a:b:c``), with the
labels TF Serving gives them; times are microseconds and buckets are TF Serving's:

- ``:tensorflow:serving:request_count`` {model_name, signature_name, status}: Predict,
  Classify and Regress requests, as TF Serving counts (metadata and status calls are not:
  health probes would swamp error rates); ``signature_name`` is ours.
- ``:tensorflow:serving:request_latency`` {model_name, API, entrypoint}: successful
  requests only, as TF Serving does; ``:tensorflow:serving:runtime_latency``
  {model_name, API, runtime}: the model run alone (runtime ``TF2`` here).
- ``:tensorflow:serving:batching_session:queuing_latency`` {model_name, signature_name}:
  per task (TF Serving labels it by thread_pool_name only);
  ``:tensorflow:serving:batching:batch_size`` {model_name, op_name},
  ``:tensorflow:serving:batching:padding_size_v2`` {model_name, execution_batch_size,
  op_name} and ``:tensorflow:serving:batching:processed_batch_size_v2`` {model_name, op_name,
  batch_size}, op_name being the signature (TF's batch ops name the BatchFunction op).
- ``:tensorflow:serving:model_warmup_latency`` {model_path, status},
  ``:tensorflow:cc:saved_model:load_attempt_count`` {model_path, status: success|fail} and
  ``:tensorflow:cc:saved_model:load_latency`` {model_path} (total microseconds of loads).
- ``spade_serve_batch_queue_tasks`` {model_name, signature_name}: tasks waiting to be
  batched (TF Serving has no such gauge).

Unavoidable differences from TF Serving's page: counters are typed ``untyped`` (prometheus_client
writes a ``counter`` as ``NAME_total``, and TF Serving's name has no ``_total``), values print
as ``1.0`` not ``1``, ``# HELP`` lines are added, and a value exactly on a bucket limit counts
in that bucket (``le`` is <=; TF Serving's buckets exclude their upper limit).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from serving.errors import RequestError
from serving.text_proto import read_text_proto
from spade_tf.errors import SpadeError

#: TF Serving's PrometheusExporter::kPrometheusPath, used when the config's path is empty.
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
EXAMPLE_CONFIG = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
# The REST API's paths (TF Serving's kPathRegex "(?i)/v1/.*"): a metrics path there is shadowed.
_REST_API_PREFIX = "/v1/"
INFERENCE_APIS = ("Predict", "Classify", "Regress")
# Both REST's lower-case methods and gRPC's method names end up spelt as TF Serving's gRPC does.
_API_NAMES = {name.lower(): name for name in (
    *INFERENCE_APIS, "MultiInference", "GetModelMetadata", "GetModelStatus")}
_API_NAMES.update(metadata="GetModelMetadata", status="GetModelStatus")
RUNTIME = "TF2"  # TF Serving writes "TF1" (Session) or "TFRT"; this server runs TF2 functions.


class MonitoringConfigError(SpadeError, ValueError):
    """A ``--monitoring_config_file`` that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class MonitoringConfig:
    """What a monitoring config asks for (``prometheus_enabled`` False: serve no metrics)."""

    prometheus_enabled: bool = False
    prometheus_path: str = DEFAULT_PROMETHEUS_PATH


def _monitoring_config_class() -> type:
    """TF Serving's MonitoringConfig message (the installed tensorflow_serving lacks the proto)."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving", syntax="proto3")
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL,
                         label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING,
                         label=field.LABEL_OPTIONAL)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=field.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig",
                         label=field.LABEL_OPTIONAL)
    # A private pool: no clash with a tensorflow_serving that one day registers the real one.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


_MonitoringConfigProto = _monitoring_config_class()


def load_monitoring_config(path: str | os.PathLike) -> MonitoringConfig:
    """Read TF Serving's MonitoringConfig text format from ``path``.

    Raises :class:`MonitoringConfigError` for a missing or unreadable file, text protobuf
    cannot parse (with its ``line:column``), or a path the REST port could never answer.
    """
    where = f"monitoring config {os.fspath(path)}"
    message = read_text_proto(path, _MonitoringConfigProto(), "monitoring config",
                              f"e.g. {EXAMPLE_CONFIG}", MonitoringConfigError)
    prometheus = message.prometheus_config
    metrics_path = prometheus.path or DEFAULT_PROMETHEUS_PATH
    if not metrics_path.startswith("/"):
        # TF Serving registers it as given, and then no request path can ever match it.
        problem, fix = "does not start with '/'", f'path: "/{metrics_path}"'
    elif metrics_path.lower().startswith(_REST_API_PREFIX):
        # TF Serving does not check this; here the REST API owns /v1/ and would answer first.
        problem, fix = "is under /v1/, where the REST API answers", (
            f'a path outside /v1/, e.g. path: "{DEFAULT_PROMETHEUS_PATH}"')
    elif any(char in metrics_path for char in "?# \t\r\n"):
        problem, fix = "holds '?', '#' or white space, which a request path never does", (
            f'path: "{DEFAULT_PROMETHEUS_PATH}"')
    else:
        return MonitoringConfig(bool(prometheus.enable), metrics_path)
    raise MonitoringConfigError(
        f"{where}: prometheus_config path {metrics_path!r} {problem}; use {fix} (or leave path "
        f"out for {DEFAULT_PROMETHEUS_PATH})")


def _exponential(scale: float, growth: float, count: int) -> list[float]:
    """TF's monitoring::Buckets::Exponential limits (+Inf is added by prometheus_client),
    to the six digits TF prints them with."""
    return [float(f"{scale * growth ** i:.6g}") for i in range(count)]


# TF Serving's buckets: util.cc (request/runtime latency: 10us x 1.8^i, ~20 minutes),
# batching_session.cc (queuing: 100us x 1.2^i, ~1 s), batch_resource_base.cc (batch sizes).
_LATENCY_BUCKETS = _exponential(10, 1.8, 33)
_QUEUING_BUCKETS = _exponential(100, 1.2, 52)
_BATCH_SIZE_BUCKETS = _exponential(1, 1.5, 20)
# Centred on powers of two: 0, then [(2/3)2^i, (4/3)2^i). TF's first limit, -2/3, is left
# out: no padding is negative, and prometheus_client drops _sum from a histogram that has one.
_PADDING_BUCKETS = _exponential(2 / 3, 2, 16)


def _micros(seconds: float) -> float:
    return max(seconds, 0.0) * 1e6  # TF Serving clamps a backwards clock to 0 as well


class _TFServingCollector(Collector):
    """prometheus_client metrics rendered under TF Serving's names: a counter's
    ``NAME_total`` sample becomes ``NAME`` (typed untyped), ``_created`` samples are dropped."""

    def __init__(self) -> None:
        self.metrics: list[Counter | Gauge | Histogram] = []

    def add(self, metric):
        self.metrics.append(metric)
        return metric

    def collect(self) -> Iterator[Metric]:
        for metric in self.metrics:
            for family in metric.collect():
                counter = family.type == "counter"
                renamed = Metric(family.name, family.documentation,
                                 "unknown" if counter else family.type)
                for sample in family.samples:
                    if sample.name.endswith("_created"):
                        continue
                    name = family.name if counter else sample.name
                    renamed.add_sample(name, sample.labels, sample.value)
                yield renamed


class ServingMetrics:
    """One server's metrics, in a registry of its own (servers in one process stay apart).

    Every method is thread-safe and cheap enough to call on each request.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        metrics = _TFServingCollector()
        self._requests = metrics.add(Counter(
            ":tensorflow:serving:request_count", "The total number of requests.",
            ["model_name", "signature_name", "status"], registry=None))
        self._request_latency = metrics.add(Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"], buckets=_LATENCY_BUCKETS, registry=None))
        self._runtime_latency = metrics.add(Histogram(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"], buckets=_LATENCY_BUCKETS, registry=None))
        self._queuing = metrics.add(Histogram(
            ":tensorflow:serving:batching_session:queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            ["model_name", "signature_name"], buckets=_QUEUING_BUCKETS, registry=None))
        self._batch_size = metrics.add(Histogram(
            ":tensorflow:serving:batching:batch_size",
            "Tracks the batch size distribution on the batch result by model_name.",
            ["model_name", "op_name"], buckets=_BATCH_SIZE_BUCKETS, registry=None))
        self._padding = metrics.add(Histogram(
            ":tensorflow:serving:batching:padding_size_v2",
            "Tracks the padding size distribution on batches by model_name.",
            ["model_name", "execution_batch_size", "op_name"], buckets=_PADDING_BUCKETS,
            registry=None))
        self._processed = metrics.add(Counter(
            ":tensorflow:serving:batching:processed_batch_size_v2",
            "Tracks the batch size on processing by model_name and op name.",
            ["model_name", "op_name", "batch_size"], registry=None))
        self._queue_tasks = metrics.add(Gauge(
            "spade_serve_batch_queue_tasks", "Tasks waiting in the batch queue.",
            ["model_name", "signature_name"], registry=None))
        self._rest_queue = metrics.add(Gauge(
            "spade_serve_rest_queued_requests", "REST predictions waiting for a worker.",
            [], registry=None))
        self._warmup = metrics.add(Histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"], buckets=_LATENCY_BUCKETS, registry=None))
        self._load_attempts = metrics.add(Counter(
            ":tensorflow:cc:saved_model:load_attempt_count",
            "The number of times a SavedModel was successfully loaded.",
            ["model_path", "status"], registry=None))
        self._load_latency = metrics.add(Counter(
            ":tensorflow:cc:saved_model:load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.",
            ["model_path"], registry=None))
        self.registry.register(metrics)

    def observe_request(self, model_name: str, signature: str, api: str, entrypoint: str,
                        status: grpc.StatusCode, seconds: float) -> None:
        """One finished request: ``api`` a gRPC method or REST verb ("Predict", "predict",
        "GetModelStatus" ...), ``entrypoint`` "GRPC" or "REST", ``seconds`` its wall time."""
        api = _API_NAMES.get(api.lower(), api)
        if api in INFERENCE_APIS:
            self._requests.labels(model_name, signature, status.name).inc()
        if status == grpc.StatusCode.OK:
            self._request_latency.labels(model_name, api, entrypoint.upper()).observe(
                _micros(seconds))

    def observe_runtime(self, model_name: str, api: str, seconds: float) -> None:
        """The model's own run time within a successful request (no parsing, no queuing)."""
        api = _API_NAMES.get(api.lower(), api)
        self._runtime_latency.labels(model_name, api, RUNTIME).observe(_micros(seconds))

    def observe_batch(self, model_name: str, signature: str, size: int, padded_size: int,
                      queue_seconds: Sequence[float]) -> None:
        """One batch run: ``size`` real items padded to ``padded_size``, and how long each
        of its tasks waited in the queue."""
        for seconds in queue_seconds:
            self._queuing.labels(model_name, signature).observe(_micros(seconds))
        self._batch_size.labels(model_name, signature).observe(size)
        self._padding.labels(model_name, str(padded_size), signature).observe(
            padded_size - size)
        self._processed.labels(model_name, signature, str(padded_size)).inc()

    def queue_depth(self, model_name: str, signature: str,
                    tasks: int | Callable[[], float]) -> None:
        """Tasks waiting to be batched: a number now, or a function read at each scrape."""
        gauge = self._queue_tasks.labels(model_name, signature)
        if callable(tasks):
            gauge.set_function(tasks)
        else:
            gauge.set(tasks)

    def observe_load(self, model_path: str | os.PathLike, seconds: float, ok: bool) -> None:
        """One attempt to load the SavedModel at ``model_path`` (the version folder, as TF
        keys its load metrics); only successful loads add to the load latency."""
        model_path = os.fspath(model_path)
        self._load_attempts.labels(model_path, "success" if ok else "fail").inc()
        if ok:
            self._load_latency.labels(model_path).inc(_micros(seconds))

    def observe_warmup(self, model_path: str | os.PathLike, seconds: float,
                       status: str = "OK") -> None:
        """One warm-up replay; ``status`` as TF Serving prints it ("OK", or "CODE: message")."""
        self._warmup.labels(os.fspath(model_path), status).observe(_micros(seconds))

    def exposition(self) -> tuple[bytes, str]:
        """The page for the metrics path: body and content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def rest_queue_depth(self, waiting: Callable[[], float]) -> None:
        """REST predictions waiting for a worker, read at each scrape."""
        self._rest_queue.set_function(waiting)


@contextmanager
def observed(metrics: ServingMetrics | None, model_name: str, signature: str,
             entrypoint: str, context: grpc.ServicerContext | None = None) -> Iterator[None]:
    """Count and time the Predict request run inside the block: its status is OK, the code
    of a :class:`RequestError` it raises, or the code a gRPC ``context`` was aborted with."""
    if metrics is None:
        yield
        return
    start = time.perf_counter()
    code = grpc.StatusCode.OK
    try:
        yield
    except RequestError as error:
        code = error.code
        raise
    except BaseException:
        code = (context.code() if context is not None else None) or grpc.StatusCode.INTERNAL
        raise
    finally:
        metrics.observe_request(model_name, signature, "Predict", entrypoint, code,
                                time.perf_counter() - start)
