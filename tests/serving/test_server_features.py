"""TF Serving's server features through ``SpadeServer`` and ``spade-serve``: batching over
gRPC and REST, Prometheus metrics on the REST port, models.config labels, and the flags.

Real gRPC and HTTP on 127.0.0.1; answers are compared with the export run in-process, so
batching must change nothing a client sees.
"""

from __future__ import annotations

import http.client
import json
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.batching import BatchingParameters
from serving.metrics import MonitoringConfig
from serving.model_config import ModelEntry
from serving.server import SpadeServer
from spade_cli import serve
from spade_tf import signatures as sig

DEADLINE = 60.0
METRICS = "/monitoring/prometheus/metrics"


def rest(port: int, method: str, path: str, document=None) -> tuple[int, dict | str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        connection.request(method, path, json.dumps(document) if document is not None else None)
        response = connection.getresponse()
        body = response.read().decode()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(body) if kind.startswith("application/json") \
            else body
    finally:
        connection.close()


def grpc_predict(address: str, model: str, labels: np.ndarray, label: str = ""
                 ) -> predict_pb2.PredictResponse:
    with grpc.insecure_channel(address) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        if label:
            request.model_spec.version_label = label
        request.inputs[sig.LABEL_IDS].CopyFrom(tf.make_tensor_proto(labels))
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=DEADLINE)


def samples(page: str) -> dict[tuple, float]:
    """The scraped page as {(name, sorted labels): value}, read by Prometheus' own parser."""
    values = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


@pytest.fixture(scope="module")
def batching_server(plain_model):
    # A long timeout, so that requests released together surely meet in one batch.
    server = SpadeServer(plain_model.base, plain_model.name, port=0, rest_port=0,
                         poll_seconds=0, workers=16, static_dir=None,
                         batching=BatchingParameters(max_batch_size=8,
                                                     batch_timeout_micros=300_000,
                                                     num_batch_threads=1,
                                                     max_enqueued_batches=64),
                         monitoring=MonitoringConfig(True, METRICS))
    server.start()
    yield server
    server.stop(grace=1.0).wait(10)


def test_batched_answers_equal_unbatched_ones_and_a_bad_request_fails_alone(
        batching_server, plain_model, plain_server):
    maps = [plain_model.random_maps(seed=40 + i)[sig.LABEL_IDS] for i in range(8)]
    maps[5] = np.full_like(maps[5], 99)  # an id outside the 5 classes
    expected = {i: plain_model.in_process(sig.DEFAULT_SIGNATURE, label_ids=m)[sig.IMAGE]
                for i, m in enumerate(maps) if i != 5}
    with pytest.raises(grpc.RpcError) as alone:  # the unbatched server's refusal
        grpc_predict(plain_server.address, plain_model.name, maps[5])
    barrier = threading.Barrier(len(maps))
    answers: dict[int, object] = {}

    def call(index: int) -> None:
        barrier.wait(DEADLINE)
        if index % 2:  # half over REST, half over gRPC: one queue for both
            status, document = rest(batching_server.rest.port, "POST",
                                    f"/v1/models/{plain_model.name}:predict",
                                    {"instances": maps[index].tolist()})
            answers[index] = np.asarray(document["predictions"], np.uint8) if status == 200 \
                else (status, document["error"])
            return
        try:
            response = grpc_predict(batching_server.address, plain_model.name, maps[index])
            answers[index] = tf.make_ndarray(response.outputs[sig.IMAGE])
        except grpc.RpcError as error:
            answers[index] = (error.code(), error.details())

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(maps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    for index, image in expected.items():
        assert isinstance(answers[index], np.ndarray), answers[index]
        np.testing.assert_array_equal(answers[index], image)
    assert answers[5] == (400, alone.value.details())
    page = samples(rest(batching_server.rest.port, "GET", METRICS)[1])
    sizes = {key: value for key, value in page.items()
             if key[0] == ":tensorflow:serving:batching:batch_size_count"}
    batches = sum(sizes.values())
    assert 1 <= batches < len(maps), "the concurrent requests were not merged"


def test_metrics_count_requests_by_model_signature_and_status(batching_server, plain_model):
    port, name = batching_server.rest.port, plain_model.name
    before = samples(rest(port, "GET", METRICS)[1])
    labels = plain_model.random_maps(seed=3)[sig.LABEL_IDS]
    assert rest(port, "POST", f"/v1/models/{name}:predict",
                {"instances": labels.tolist()})[0] == 200
    grpc_predict(batching_server.address, name, labels)
    assert rest(port, "POST", f"/v1/models/{name}:predict",
                {"instances": [[[1.5]]]})[0] == 400
    status, page = rest(port, "GET", METRICS)
    assert status == 200 and isinstance(page, str)
    after = samples(page)

    def grew(metric: str, **labels) -> float:
        key = (metric, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    count = ":tensorflow:serving:request_count"
    assert grew(count, model_name=name, signature_name=sig.DEFAULT_SIGNATURE, status="OK") == 2
    assert grew(count, model_name=name, signature_name=sig.DEFAULT_SIGNATURE,
                status="INVALID_ARGUMENT") == 1
    latency = ":tensorflow:serving:request_latency_count"
    assert grew(latency, model_name=name, API="Predict", entrypoint="REST") == 1
    assert grew(latency, model_name=name, API="Predict", entrypoint="GRPC") == 1
    path = str(plain_model.version_dir)
    assert after[(":tensorflow:cc:saved_model:load_attempt_count",
                  (("model_path", path), ("status", "success")))] == 1
    assert ("spade_serve_rest_queued_requests", ()) in after
    # The metrics path is served on the REST port only when monitoring is on.
    assert rest(port, "GET", "/monitoring/prometheus/other")[0] == 404


def test_version_labels_over_rest_and_grpc(tmp_path, plain_model, copy_version):
    base = tmp_path / "plain"
    copy_version(plain_model, base, 1)
    copy_version(plain_model, base, 2)
    entry = ModelEntry(name="plain", base_path=base, policy="specific", versions=(1, 2),
                       labels={"stable": 1, "canary": 2})
    server = SpadeServer(model_config=[entry], port=0, rest_port=0, poll_seconds=0,
                         static_dir=None)
    server.start()
    try:
        labels = plain_model.random_maps(seed=5)[sig.LABEL_IDS]
        for label, version in (("stable", 1), ("canary", 2)):
            response = grpc_predict(server.address, "plain", labels, label=label)
            assert response.model_spec.version.value == version
            status, document = rest(server.rest.port, "GET", f"/v1/models/plain/labels/{label}")
            assert status == 200
            assert [entry["version"] for entry in document["model_version_status"]] == \
                [str(version)]
            status, document = rest(server.rest.port, "POST",
                                    f"/v1/models/plain/labels/{label}:predict",
                                    {"instances": labels.tolist()})
            assert status == 200
        status, document = rest(server.rest.port, "POST", "/v1/models/plain/labels/beta:predict",
                                {"instances": labels.tolist()})
        assert status == 400
        assert document["error"].startswith("Unrecognized servable version label: beta")
        status, document = rest(server.rest.port, "GET", "/painter/models.json")
        assert (status, document) == (200, {"models": ["plain"]})
    finally:
        server.stop(grace=1.0).wait(10)


@pytest.mark.parametrize("argv, message", [
    (["--model-base-path", "x", "--batching-parameters-file", "b.txt"],
     "--batching-parameters-file needs --enable-batching"),
    (["--model-base-path", "x", "--monitoring-config-file", "m.config"],
     "--monitoring-config-file needs --rest-port"),
    (["--model-base-path", "x", "--model-config-file", "models.config"],
     "not both"),
    ([], "required: --model-base-path (or --model-config-file)"),
    (["--model-base-path", "x", "--rest-body-timeout", "0"], "--rest-body-timeout 0"),
])
def test_flag_mistakes_end_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_config_file_mistakes_end_in_one_line(tmp_path, plain_model, capsys):
    broken = tmp_path / "batching.txt"
    broken.write_text("max_batch_size { value: 8 \n")
    code = serve.main(["--model-base-path", str(plain_model.base), "--enable-batching",
                       "--batching-parameters-file", str(broken)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(broken) in err, err
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/v1/metrics" }')
    # The files are read before the ports are checked: any REST port shows the mistake.
    code = serve.main(["--model-base-path", str(plain_model.base), "--rest-port", "8599",
                       "--monitoring-config-file", str(monitoring)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "/v1/" in err, err
