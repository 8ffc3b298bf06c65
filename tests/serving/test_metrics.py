"""serving.metrics: TF Serving's monitoring config file and its Prometheus page (no model)."""

from __future__ import annotations

import threading

import grpc
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import (
    DEFAULT_PROMETHEUS_PATH,
    MonitoringConfig,
    MonitoringConfigError,
    ServingMetrics,
    load_monitoring_config,
)
from spade_tf.errors import SpadeError

OK = grpc.StatusCode.OK
SIG = "serving_default"


def _config(tmp_path, text: str) -> MonitoringConfig:
    path = tmp_path / "monitoring.config"
    path.write_text(text)
    return load_monitoring_config(path)


def _refusal(tmp_path, text: str) -> str:
    path = tmp_path / "monitoring.config"
    path.write_text(text)
    with pytest.raises(MonitoringConfigError) as caught:
        load_monitoring_config(path)
    assert isinstance(caught.value, SpadeError) and isinstance(caught.value, ValueError)
    assert str(path) in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("text, expected", [
    ('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }',
     MonitoringConfig(True, "/monitoring/prometheus/metrics")),
    # TF Serving's documented layout, commas and all.
    ('prometheus_config {\n  enable: true,\n  path: "/custom/metrics"\n}\n',
     MonitoringConfig(True, "/custom/metrics")),
    ("prometheus_config { enable: true }", MonitoringConfig(True, DEFAULT_PROMETHEUS_PATH)),
    ('prometheus_config { enable: true path: "" }',
     MonitoringConfig(True, "/monitoring/prometheus/metrics")),
    ('# metrics off\nprometheus_config { enable: false, path: "/m" }',
     MonitoringConfig(False, "/m")),
    ("", MonitoringConfig(False, "/monitoring/prometheus/metrics")),
])
def test_config_text_forms(tmp_path, text, expected):
    assert _config(tmp_path, text) == expected


def test_config_unparsable_names_line_and_column(tmp_path):
    message = _refusal(tmp_path, "prometheus_config {\n  enabled: true\n}\n")
    assert "monitoring.config:2:3: " in message
    assert 'has no field named "enabled"' in message
    assert "prometheus_config { enable: true" in message  # the fix: an example
    message = _refusal(tmp_path, "prometheus_config { enable: yes }")
    assert "monitoring.config:1:29: " in message and 'Expected "true" or "false"' in message


def test_config_missing_file_and_folder(tmp_path):
    missing = tmp_path / "nope.config"
    with pytest.raises(MonitoringConfigError, match="nope.config does not exist: give the "
                       "path of a text-format MonitoringConfig \\(e.g. prometheus_config"):
        load_monitoring_config(missing)
    with pytest.raises(MonitoringConfigError, match="is a folder: give the file itself"):
        load_monitoring_config(tmp_path)


@pytest.mark.parametrize("path, problem", [
    ("metrics", "does not start with '/'"),
    ("/v1/metrics", "is under /v1/, where the REST API answers"),
    ("/V1/models/x", "is under /v1/, where the REST API answers"),
    ("/metrics?x=1", "holds '?', '#' or white space, which a request path never does"),
])
def test_config_paths_the_rest_port_cannot_answer(tmp_path, path, problem):
    message = _refusal(tmp_path, f'prometheus_config {{ enable: true, path: "{path}" }}')
    assert f"prometheus_config path {path!r} {problem}; use " in message


def test_config_v1_lookalikes_are_fine(tmp_path):
    assert _config(tmp_path, 'prometheus_config { path: "/v1metrics" }').prometheus_path == \
        "/v1metrics"


def _page(metrics: ServingMetrics) -> tuple[str, dict]:
    body, content_type = metrics.exposition()
    assert content_type == CONTENT_TYPE_LATEST
    text = body.decode()
    return text, {family.name: family for family in text_string_to_metric_families(text)}


def _samples(families: dict, family: str, sample: str | None = None, **labels) -> list:
    return [s for s in families[family].samples
            if s.name == (sample or family) and labels.items() <= s.labels.items()]


def _value(families: dict, family: str, sample: str | None = None, **labels) -> float:
    (found,) = _samples(families, family, sample, **labels)
    return found.value


def test_requests_count_and_latency_as_tf_serving():
    metrics = ServingMetrics()
    for seconds in (0.001, 0.002, 0.5):
        metrics.observe_request("spade", SIG, "Predict", "GRPC", OK, seconds)
    metrics.observe_request("spade", SIG, "predict", "rest", grpc.StatusCode.INVALID_ARGUMENT,
                            0.004)
    metrics.observe_request("spade", "", "GetModelStatus", "REST", OK, 0.0001)
    metrics.observe_request("other", "encode", "Predict", "GRPC", grpc.StatusCode.NOT_FOUND, 1)
    text, families = _page(metrics)

    count = ":tensorflow:serving:request_count"
    # TF Serving's exact sample name: no _total, no _created.
    assert (':tensorflow:serving:request_count{model_name="spade",signature_name='
            '"serving_default",status="OK"} 3.0') in text.splitlines()
    assert "_total" not in text and "_created" not in text
    assert families[count].type == "unknown"
    assert {(s.labels["model_name"], s.labels["signature_name"], s.labels["status"]): s.value
            for s in families[count].samples} == {
        ("spade", SIG, "OK"): 3, ("spade", SIG, "INVALID_ARGUMENT"): 1,
        ("other", "encode", "NOT_FOUND"): 1}  # GetModelStatus is not counted, as in TF Serving

    latency = ":tensorflow:serving:request_latency"
    assert families[latency].type == "histogram"
    grpc_predict = {"model_name": "spade", "API": "Predict", "entrypoint": "GRPC"}
    assert _value(families, latency, latency + "_count", **grpc_predict) == 3
    assert _value(families, latency, latency + "_sum", **grpc_predict) == pytest.approx(503_000)
    buckets = {s.labels["le"]: s.value for s in _samples(families, latency, latency + "_bucket",
                                                          **grpc_predict)}
    # TF Serving's buckets: 10us x 1.8^i, 33 of them, then +Inf.
    assert list(buckets)[:4] == ["10.0", "18.0", "32.4", "58.32"] and len(buckets) == 34
    assert (buckets["612.22"], buckets["1102.0"], buckets["3570.47"]) == (0, 1, 2)
    assert (buckets["393464.0"], buckets["708235.0"], buckets["+Inf"]) == (2, 3, 3)
    # Failed requests have no latency (TF Serving's rule); REST's "predict" is spelt "Predict".
    assert not _samples(families, latency, latency + "_count", entrypoint="REST", API="Predict")
    assert _value(families, latency, latency + "_sum", API="GetModelStatus",
                  entrypoint="REST") == pytest.approx(100)


def test_runtime_latency_and_backwards_clock():
    metrics = ServingMetrics()
    metrics.observe_runtime("spade", "predict", 0.25)
    metrics.observe_runtime("spade", "Predict", -1.0)
    _, families = _page(metrics)
    runtime = ":tensorflow:serving:runtime_latency"
    labels = {"model_name": "spade", "API": "Predict", "runtime": "TF2"}
    assert _value(families, runtime, runtime + "_count", **labels) == 2
    assert _value(families, runtime, runtime + "_sum", **labels) == pytest.approx(250_000)


def test_batches_and_queue_depth():
    metrics = ServingMetrics()
    metrics.observe_batch("spade", SIG, 3, 4, [0.0005, 0.002, 0.01])
    metrics.observe_batch("spade", SIG, 4, 4, [0.001])
    metrics.observe_batch("spade", "encode", 1, 1, [0.0])
    waiting = [7]
    metrics.queue_depth("spade", SIG, lambda: waiting[0])
    metrics.queue_depth("spade", "encode", 2)
    _, families = _page(metrics)

    queuing = ":tensorflow:serving:batching_session:queuing_latency"
    sig = {"model_name": "spade", "signature_name": SIG}
    assert _value(families, queuing, queuing + "_count", **sig) == 4
    assert _value(families, queuing, queuing + "_sum", **sig) == pytest.approx(13_500)
    assert _value(families, queuing, queuing + "_bucket", le="100.0", **sig) == 0
    assert _value(families, queuing, queuing + "_bucket", le="1069.93", **sig) == 2

    size = ":tensorflow:serving:batching:batch_size"
    op = {"model_name": "spade", "op_name": SIG}
    assert _value(families, size, size + "_count", **op) == 2
    assert _value(families, size, size + "_sum", **op) == 7
    padding = ":tensorflow:serving:batching:padding_size_v2"
    assert _value(families, padding, padding + "_count", execution_batch_size="4", **op) == 2
    assert _value(families, padding, padding + "_sum", execution_batch_size="4", **op) == 1
    assert _value(families, padding, padding + "_bucket", le="0.666667",
                  execution_batch_size="4", **op) == 1  # the batch that needed no padding
    processed = ":tensorflow:serving:batching:processed_batch_size_v2"
    assert _value(families, processed, batch_size="4", **op) == 2
    assert _value(families, processed, model_name="spade", op_name="encode") == 1

    depth = "spade_serve_batch_queue_tasks"
    assert _value(families, depth, **sig) == 7
    assert _value(families, depth, signature_name="encode") == 2
    waiting[0] = 0  # read again at each scrape
    assert _value(_page(metrics)[1], depth, **sig) == 0


def test_loads_and_warmups(tmp_path):
    metrics = ServingMetrics()
    good, bad = tmp_path / "spade" / "1", str(tmp_path / "spade" / "2")
    metrics.observe_load(good, 2.5, ok=True)
    metrics.observe_load(bad, 0.1, ok=False)
    metrics.observe_load(bad, 0.2, ok=False)
    metrics.observe_warmup(good, 0.5)
    metrics.observe_warmup(bad, 0.01, "INVALID_ARGUMENT: warm-up request 1 failed")
    _, families = _page(metrics)

    attempts = ":tensorflow:cc:saved_model:load_attempt_count"
    assert _value(families, attempts, model_path=str(good), status="success") == 1
    assert _value(families, attempts, model_path=bad, status="fail") == 2
    assert not _samples(families, attempts, model_path=bad, status="success")
    load_latency = ":tensorflow:cc:saved_model:load_latency"
    assert [(s.labels, s.value) for s in families[load_latency].samples] == [
        ({"model_path": str(good)}, pytest.approx(2_500_000))]  # successful loads only
    warmup = ":tensorflow:serving:model_warmup_latency"
    assert _value(families, warmup, warmup + "_sum", model_path=str(good),
                  status="OK") == pytest.approx(500_000)
    assert _value(families, warmup, warmup + "_count", model_path=bad,
                  status="INVALID_ARGUMENT: warm-up request 1 failed") == 1


def test_instances_are_independent():
    first, second = ServingMetrics(), ServingMetrics()
    first.observe_request("spade", SIG, "Predict", "GRPC", OK, 0.01)
    first.observe_load("/models/spade/1", 1.0, ok=True)
    _, families = _page(second)
    assert families  # every metric is declared; none has a sample yet but the REST queue
    assert {name for name, family in families.items() if family.samples} == {
        "spade_serve_rest_queued_requests"}
    assert families["spade_serve_rest_queued_requests"].samples[0].value == 0
    _, families = _page(first)
    assert _value(families, ":tensorflow:serving:request_count", status="OK") == 1


def test_concurrent_updates_are_all_counted():
    metrics = ServingMetrics()

    def record() -> None:
        for _ in range(500):
            metrics.observe_request("spade", SIG, "Predict", "GRPC", OK, 0.001)

    threads = [threading.Thread(target=record) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, families = _page(metrics)
    latency = ":tensorflow:serving:request_latency"
    assert _value(families, ":tensorflow:serving:request_count", status="OK") == 4000
    assert _value(families, latency, latency + "_count", API="Predict") == 4000
