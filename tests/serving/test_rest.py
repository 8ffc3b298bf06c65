"""TF Serving's REST API (serving/rest.py) over real HTTP on 127.0.0.1.

Request bodies are written here as TF Serving's REST API documentation shows them
(``{"instances": ...}``, ``{"inputs": ...}``, ``{"b64": ...}``), never with serving.rest's
own helpers; answers are checked against the gRPC server on the same export.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import rest
from serving.model_manager import RequestError
from serving.rest import RestServer, RestServerError
from spade_tf import signatures as sig

DEADLINE = 30.0
MESSAGE_LIMIT = 256 * 1024 * 1024
SECRET = "the-secret-outside-the-static-folder"
SMALL_LIMIT = 4096


# -- clients ------------------------------------------------------------------------------


def host_port(server: RestServer) -> tuple[str, int]:
    return server.host, server.port


def call(server: RestServer, method: str, path: str, body: bytes | str | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request on a new connection: (status, headers, body)."""
    connection = http.client.HTTPConnection(*host_port(server), timeout=DEADLINE)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post(server: RestServer, path: str, document) -> tuple[int, dict]:
    body = document if isinstance(document, bytes | str) else json.dumps(document)
    status, _, answer = call(server, "POST", path, body, {"Content-Type": "application/json"})
    return status, json.loads(answer)


def get(server: RestServer, path: str) -> tuple[int, dict]:
    status, _, answer = call(server, "GET", path)
    return status, json.loads(answer)


def raw(server: RestServer, request: bytes, shut_write: bool = False) -> tuple[int, dict, bytes]:
    """Bytes sent as they are (what http.client would not send), then the answer."""
    with socket.create_connection(host_port(server), timeout=DEADLINE) as sock:
        sock.sendall(request)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


class Grpc:
    """The stock TF Serving stub against the gRPC server of the same export."""

    def __init__(self, server):
        self.channel = grpc.insecure_channel(server.address, options=[
            ("grpc.max_send_message_length", MESSAGE_LIMIT),
            ("grpc.max_receive_message_length", MESSAGE_LIMIT)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def request(self, model: str, signature: str = "", version: int | None = None,
                label: str = "", **inputs) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        if label:
            request.model_spec.version_label = label
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
        return request

    def predict(self, model: str, signature: str = "", **inputs) -> dict[str, np.ndarray]:
        response = self.stub.Predict(self.request(model, signature, **inputs), timeout=DEADLINE)
        return {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}

    def refusal(self, request) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as info:
            self.stub.Predict(request, timeout=DEADLINE)
        return info.value.code(), info.value.details()

    def metadata(self, model: str) -> get_model_metadata_pb2.SignatureDefMap:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_pb2.ModelSpec(name=model), metadata_field=["signature_def"])
        response = self.stub.GetModelMetadata(request, timeout=DEADLINE)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return signature_map


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def static_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("rest_static")
    site = root / "site"
    (site / "sub").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>painter</title>")
    (site / "app.js").write_text("console.log('painter');")
    (site / "style.css").write_text("body { margin: 0 }")
    (site / "sub" / "index.html").write_text("the sub page")
    (site / ".hidden").write_text(SECRET)
    (root / "secret.txt").write_text(SECRET)
    (site / "escape.txt").symlink_to(root / "secret.txt")
    return site


def _running(server: RestServer):
    server.start()
    yield server
    assert server.stop(timeout=10)


@pytest.fixture(scope="module")
def plain_rest(plain_server, static_root):
    yield from _running(RestServer(plain_server.manager, port=0, static_dir=static_root))


@pytest.fixture(scope="module")
def vae_rest(vae_server):
    yield from _running(RestServer(vae_server.manager, port=0))


@pytest.fixture(scope="module")
def small_rest(plain_server):
    """A tiny body limit, CORS on, no static folder."""
    yield from _running(RestServer(plain_server.manager, port=0, max_body_bytes=SMALL_LIMIT,
                                   cors_origin="*"))


@pytest.fixture(scope="module")
def plain_grpc(plain_server):
    stubs = Grpc(plain_server)
    yield stubs
    stubs.channel.close()


@pytest.fixture(scope="module")
def vae_grpc(vae_server):
    stubs = Grpc(vae_server)
    yield stubs
    stubs.channel.close()


def version_of(model) -> int:
    return int(model.version_dir.name)


def assert_healthy(server: RestServer, model_name: str) -> None:
    status, document = get(server, f"/v1/models/{model_name}")
    assert status == 200, document
    assert document["model_version_status"][0]["state"] == "AVAILABLE"


# -- status and metadata -----------------------------------------------------------------


def test_model_status_is_tf_servings_json(plain_rest, plain_model, plain_server):
    version = version_of(plain_model)
    expected = {"model_version_status": [{
        "version": str(version), "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]}
    for path in ("/v1/models/plain", f"/v1/models/plain/versions/{version}",
                 f"/V1/MODELS/plain/Versions/{version}"):
        status, headers, body = call(plain_rest, "GET", path)
        assert (status, headers["Content-Type"]) == (200, "application/json"), body
        assert json.loads(body) == expected

    def manager_says(**spec) -> str:
        with pytest.raises(RequestError) as info:
            plain_server.manager.states(model_pb2.ModelSpec(**spec))
        return info.value.message

    missing = version + 5
    assert get(plain_rest, f"/v1/models/plain/versions/{missing}") == (
        404, {"error": manager_says(name="plain", version={"value": missing})})
    assert get(plain_rest, "/v1/models/nope") == (404, {"error": manager_says(name="nope")})
    status, document = get(plain_rest, "/v1/models/plain/labels/stable")
    assert status == 400 and document == {"error": manager_says(name="plain",
                                                                 version_label="stable")}
    assert get(plain_rest, "/v1/models") == (400, {"error": "Missing model name in request."})
    assert get(plain_rest, "/v1/models/plain/") == (
        400, {"error": "Malformed request: GET /v1/models/plain/"})
    assert get(plain_rest, "/v1/models/plain/versions/99999999999999999999") == (
        400, {"error": "Failed to convert version: 99999999999999999999 to numeric."})


def test_model_metadata_is_tf_servings_json(vae_rest, vae_model, vae_grpc):
    version = version_of(vae_model)
    for path in ("/v1/models/spade/metadata", f"/v1/models/spade/versions/{version}/metadata"):
        status, document = get(vae_rest, path)
        assert status == 200, document
        assert document["model_spec"] == {"name": "spade", "signature_name": "",
                                          "version": str(version)}
        signature_map = json_format.ParseDict(document["metadata"]["signature_def"],
                                              get_model_metadata_pb2.SignatureDefMap())
        assert signature_map == vae_grpc.metadata("spade")
    signatures = document["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {sig.DEFAULT_SIGNATURE, sig.SEEDED_SIGNATURE,
                               sig.STYLE_SIGNATURE, sig.ENCODE_SIGNATURE, sig.PNG_SIGNATURE,
                               sig.PNG_SEEDED_SIGNATURE, sig.PNG_STYLE_SIGNATURE,
                               sig.MODEL_INFO_SIGNATURE}
    default = signatures[sig.DEFAULT_SIGNATURE]
    assert default["method_name"] == "tensorflow/serving/predict"
    label_ids = default["inputs"]["label_ids"]
    assert label_ids["dtype"] == "DT_INT32"
    assert label_ids["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}] * 3,
                                         "unknown_rank": False}
    assert default["outputs"]["image"]["dtype"] == "DT_UINT8"
    assert get(vae_rest, "/v1/models/nope/metadata")[0] == 404


# -- predictions --------------------------------------------------------------------------


def test_row_and_columnar_images_equal_grpc(plain_rest, plain_model, plain_grpc):
    label_ids = plain_model.random_maps(seed=1, batch=2)[sig.LABEL_IDS]
    expected = plain_grpc.predict("plain", label_ids=label_ids)["image"]
    rows = label_ids.tolist()

    status, headers, body = call(plain_rest, "POST", "/v1/models/plain:predict",
                                 json.dumps({"instances": rows}))
    assert (status, headers["Content-Type"]) == (200, "application/json"), body
    assert b"." not in body  # uint8 values are JSON ints
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == 2
    assert np.array_equal(np.array(predictions, dtype=np.uint8), expected)

    version = version_of(plain_model)
    for path, document in [
        (f"/v1/models/plain/versions/{version}:predict",
         {"signature_name": "serving_default", "instances": [{"label_ids": rows[0]},
                                                             {"label_ids": rows[1]}]}),
        ("/V1/Models/plain:predict", {"inputs": {"label_ids": rows}}),
        ("/v1/models/plain:predict", {"inputs": rows}),
    ]:
        status, answer = post(plain_rest, path, document)
        assert status == 200, answer
        images = answer["predictions"] if "instances" in document else answer["outputs"]
        assert np.array_equal(np.array(images, dtype=np.uint8), expected), path

    compressed = gzip.compress(json.dumps({"instances": rows}).encode())
    status, _, body = call(plain_rest, "POST", "/v1/models/plain:predict", compressed,
                           {"Content-Encoding": "gzip"})
    assert status == 200, body
    assert np.array_equal(np.array(json.loads(body)["predictions"], np.uint8), expected)


def test_named_inputs_and_int64_seeds_equal_grpc(vae_rest, vae_model, vae_grpc):
    maps = vae_model.random_maps(seed=2, batch=2)
    seeds = np.array([10, 11], np.int64)
    expected = vae_grpc.predict("spade", sig.SEEDED_SIGNATURE, seed=seeds, **maps)["image"]
    labels, instances = maps[sig.LABEL_IDS].tolist(), maps[sig.INSTANCE_IDS].tolist()

    status, answer = post(vae_rest, "/v1/models/spade:predict", {
        "signature_name": "synthesize_seeded",
        "instances": [{"label_ids": labels[0], "instance_ids": instances[0], "seed": 10},
                      {"label_ids": labels[1], "instance_ids": instances[1], "seed": 11}]})
    assert status == 200, answer
    assert np.array_equal(np.array(answer["predictions"], np.uint8), expected)

    status, answer = post(vae_rest, "/v1/models/spade:predict", {
        "signature_name": "synthesize_seeded",
        "inputs": {"label_ids": labels, "instance_ids": instances, "seed": [10, 11]}})
    assert status == 200, answer
    assert np.array_equal(np.array(answer["outputs"], np.uint8), expected)


def test_several_outputs_are_objects_with_exact_floats(vae_rest, vae_grpc):
    style = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    expected = vae_grpc.predict("spade", sig.ENCODE_SIGNATURE, style_image=style)

    status, answer = post(vae_rest, "/v1/models/spade:predict", {
        "signature_name": "encode_style", "instances": style.tolist()})
    assert status == 200, answer
    predictions = answer["predictions"]
    assert [sorted(row) for row in predictions] == [["log_variance", "mean"]] * 2
    for alias in ("mean", "log_variance"):
        values = np.array([row[alias] for row in predictions], np.float32)
        assert np.array_equal(values, expected[alias]), alias  # every float reads back

    status, answer = post(vae_rest, "/v1/models/spade:predict", {
        "signature_name": "encode_style", "inputs": {"style_image": style.tolist()}})
    assert status == 200, answer
    assert sorted(answer["outputs"]) == ["log_variance", "mean"]
    for alias in ("mean", "log_variance"):
        assert np.array_equal(np.array(answer["outputs"][alias], np.float32), expected[alias])


# -- errors -------------------------------------------------------------------------------


def test_refusals_are_grpcs_words_with_tf_servings_http_codes(
        plain_rest, plain_model, plain_grpc, vae_rest, vae_grpc):
    zeros = np.zeros((1, 64, 64), np.int32)
    rows = zeros.tolist()
    version = version_of(plain_model)
    cases = [  # (path, REST body, the same request over gRPC)
        ("/v1/models/plain:predict", {"signature_name": "nope", "instances": rows},
         plain_grpc.request("plain", "nope", label_ids=zeros)),
        ("/v1/models/plain:predict", {"instances": np.zeros((1, 32, 32), int).tolist()},
         plain_grpc.request("plain", label_ids=np.zeros((1, 32, 32), np.int32))),
        ("/v1/models/plain:predict", {"instances": np.full((1, 64, 64), 99).tolist()},
         plain_grpc.request("plain", label_ids=np.full((1, 64, 64), 99, np.int32))),
        ("/v1/models/nope:predict", {"instances": rows},
         plain_grpc.request("nope", label_ids=zeros)),
        (f"/v1/models/plain/versions/{version + 7}:predict", {"instances": rows},
         plain_grpc.request("plain", version=version + 7, label_ids=zeros)),
        ("/v1/models/plain/labels/canary:predict", {"instances": rows},
         plain_grpc.request("plain", label="canary", label_ids=zeros)),
    ]
    http_codes = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
                  grpc.StatusCode.FAILED_PRECONDITION: 400}
    for path, document, request in cases:
        code, details = plain_grpc.refusal(request)
        assert post(plain_rest, path, document) == (http_codes[code], {"error": details}), path
    assert post(plain_rest, "/v1/models/plain:predict",
                {"signature_name": "nope", "instances": rows})[0] == 400

    int_message = ("Failed to process element: 0 of 'instances' list. Error: "
                   "INVALID_ARGUMENT: JSON Value: {} Type: {} is not of expected type: {}")
    plain = [  # (body, HTTP status, message)
        ({"signature_name": "serving_default"}, 400, "Missing 'inputs' or 'instances' key"),
        ({"instances": [[[1.0] * 64] * 64]}, 400, int_message.format("1.0", "Number", "int32")),
        ('{"instances": [NaN]}', 400, int_message.format("NaN", "Number", "int32")),
        ({"instances": [{"b64": "AAAA"}]}, 400,
         int_message.format('{"b64":"AAAA"}', "Object", "int32")),
        ({"instances": [[[0] * 64] * 63 + [[0] * 63]]}, 400,
         "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
         "Encountered list at unexpected size: 63 at level: 1 expected size: 64"),
        ({"inputs": [[[0, 0], [0]]]}, 400,
         "Encountered list at unexpected size: 1 at level: 2 expected size: 2"),
        ({"instances": [[[0]]], "signature_name": 5}, 400,
         'JSON Value: {"instances":[[[0]]],"signature_name":5} not formatted correctly. '
         "'signature_name' key must be a string value."),
        ({"instances": {"label_ids": 1}}, 400,
         'JSON Value: {"instances":{"label_ids":1}} Excepting \'instances\' to be an '
         "list/array"),
        ({"instances": []}, 400, 'JSON Value: {"instances":[]} No values in \'instances\' array'),
        ("", 400, "JSON Parse error: The document is empty"),
        ("[1]", 400, "JSON Value: [1] Is not object"),
    ]
    for body, status, message in plain:
        assert post(plain_rest, "/v1/models/plain:predict", body) == (
            status, {"error": message}), body

    status, answer = post(plain_rest, "/v1/models/plain:predict",
                          {"instances": rows, "inputs": rows})
    assert status == 400 and answer["error"].startswith('JSON Value: {"instances":[[[0,0,')
    assert answer["error"].endswith("... Not formatted correctly expecting only one of "
                                    "'inputs' or 'instances' keys to exist ")
    assert len(answer["error"]) < 400  # the 64x64 map is not copied into the message
    for body in ("{", '{"instances": [1] ', b"\xff\xfe{}", "[" * 100_000):
        status, answer = post(plain_rest, "/v1/models/plain:predict", body)
        assert status == 400 and answer["error"].startswith("JSON Parse error: "), body

    labels = np.zeros((64, 64), int).tolist()
    seeded = "/v1/models/spade:predict"
    vae = [
        ({"signature_name": "synthesize_seeded", "instances": [labels]},
         "instances is a plain list, but expecting list of objects as multiple input tensors "
         "required as per tensorinfo_map"),
        ({"signature_name": "synthesize_seeded",
          "instances": [{"label_ids": labels, "instance_ids": labels, "colour": 3}]},
         "Failed to process element: 0 key: colour of 'instances' list. Error: "
         "INVALID_ARGUMENT: JSON object: does not have named input: colour"),
        ({"signature_name": "synthesize_seeded",
          "inputs": {"label_ids": [labels], "instance_ids": [labels]}},
         "Missing named input: seed in 'inputs' object."),
        ({"signature_name": "synthesize_seeded", "inputs": [labels]},
         "inputs is a plain value/list, but expecting an object as multiple input tensors "
         "required as per tensorinfo_map"),
        ({"signature_name": "encode_style", "instances": [[[[0, 300, 0]]]]},
         int_message.format("300", "Number", "uint8")),
        ({"signature_name": "synthesize_seeded",
          "instances": [{"label_ids": labels, "instance_ids": labels, "seed": 2 ** 63}]},
         "Failed to process element: 0 key: seed of 'instances' list. Error: INVALID_ARGUMENT:"
         f" JSON Value: {2 ** 63} Type: Number is not of expected type: int64"),
    ]
    for body, message in vae:
        assert post(vae_rest, seeded, body) == (400, {"error": message}), body
    status, answer = post(vae_rest, seeded, {
        "signature_name": "synthesize_seeded",
        "instances": [{"label_ids": labels, "instance_ids": labels}]})
    assert status == 400
    assert answer["error"].startswith("Failed to process element: 0 of 'instances' list. "
                                      'JSON object: {"label_ids":[[0,0,')
    assert answer["error"].endswith("... must only have keys: instance_ids,label_ids,seed")

    routes = [  # (method, path, HTTP status, message)
        ("POST", "/v1/models/plain:classify", 501, None),
        ("POST", "/v1/models/plain:regress", 501, None),
        ("POST", "/v1/models/plain:PREDICT", 400,
         "Malformed request: POST /v1/models/plain:PREDICT"),
        ("GET", "/v1/models/plain:predict", 400,
         "Malformed request: GET /v1/models/plain:predict"),
        ("PUT", "/v1/models/plain", 400, "Malformed request: PUT /v1/models/plain"),
        ("DELETE", "/v1/models/plain", 400, "Malformed request: DELETE /v1/models/plain"),
        ("OPTIONS", "/v1/models/plain:predict", 400,
         "Malformed request: OPTIONS /v1/models/plain:predict"),
        ("POST", "/v1/", 400, "Malformed request: POST /v1/"),
        ("GET", "/v2/models/plain", 404, "Not found: /v2/models/plain"),
        ("POST", "/v2/models/plain:predict", 404, "Not found: POST /v2/models/plain:predict"),
        ("GET", "/v1", 404, "Not found: /v1"),
    ]
    for method, path, status, message in routes:
        answer_status, headers, body = call(plain_rest, method, path, json.dumps(
            {"instances": rows}) if method == "POST" else None)
        assert answer_status == status, (method, path, body)
        assert headers["Content-Type"] == "application/json"
        error = json.loads(body)["error"]
        assert message is None or error == message, (method, path, error)
    assert_healthy(plain_rest, "plain")
    assert_healthy(vae_rest, "spade")
    assert post(plain_rest, "/v1/models/plain:predict", {"instances": rows})[0] == 200


def test_body_limits_refuse_before_reading(small_rest):
    path = "/v1/models/plain:predict"
    padded = json.dumps({"instances": [[[0]]], "padding": "x" * (2 * SMALL_LIMIT)})
    status, headers, body = call(small_rest, "POST", path, padded)
    assert status == 413 and headers["Connection"] == "close"
    assert json.loads(body) == {"error": f"request body of {len(padded)} bytes is larger "
                                         f"than this server's limit of {SMALL_LIMIT} bytes"}

    # A huge declared body is answered without waiting for it: not one byte of it is ever
    # sent, and a body that does not come is answered 408 (after the body timeout) or 400.
    status, _, body = raw(small_rest, f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                                      "Content-Length: 1000000000\r\n\r\n".encode())
    assert status == 413 and b"1000000000 bytes" in body
    status, _, body = raw(small_rest, f"POST {path} HTTP/1.1\r\nHost: x\r\nExpect: "
                                      "100-continue\r\nContent-Length: 1000000000\r\n\r\n".encode())
    assert status == 413 and b"1000000000 bytes" in body  # no 100 Continue first

    status, _, body = raw(small_rest, f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                      "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode())
    assert status == 411 and b"Content-Length" in body
    status, _, body = raw(small_rest, f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                                      "Content-Length: 12abc\r\n\r\n".encode())
    assert status == 400 and b"invalid Content-Length" in body
    status, _, body = raw(small_rest, f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                                      "Content-Length: 100\r\n\r\n{}".encode(), shut_write=True)
    assert status == 400 and b"ended after 2 of 100 bytes" in body

    bomb = gzip.compress(b" " * (SMALL_LIMIT * 50))  # small on the wire, large inflated
    assert len(bomb) < SMALL_LIMIT
    status, _, body = call(small_rest, "POST", path, bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and b"uncompressed" in body
    status, _, body = call(small_rest, "POST", path, b"not gzip", {"Content-Encoding": "gzip"})
    assert status == 400 and b"uncompress" in body

    connection = http.client.HTTPConnection(*host_port(small_rest), timeout=DEADLINE)
    try:  # keep-alive: a GET with a body must not leave it for the next request
        connection.request("GET", "/v1/models/plain", body=b'{"x": 1}')
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Connection") == "close"
        response.read()
    finally:
        connection.close()
    assert_healthy(small_rest, "plain")


def test_keep_alive_and_concurrent_requests(plain_rest, plain_model):
    connection = http.client.HTTPConnection(*host_port(plain_rest), timeout=DEADLINE)
    try:
        for path in ("/v1/models/plain", "/v1/models/nope", "/v1/models/plain/metadata"):
            connection.request("GET", path)
            response = connection.getresponse()
            assert response.status in (200, 404)
            json.loads(response.read())
    finally:
        connection.close()

    rows = plain_model.random_maps(seed=4)[sig.LABEL_IDS].tolist()
    results = []

    def work() -> None:
        results.append(post(plain_rest, "/v1/models/plain:predict", {"instances": rows}))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert [status for status, _ in results] == [200] * 4
    assert all(answer == results[0][1] for _, answer in results)


# -- static files and CORS ----------------------------------------------------------------


def test_static_files_without_a_way_out(plain_rest, small_rest, static_root):
    expected = [("/", "text/html; charset=utf-8", (static_root / "index.html").read_bytes()),
                ("/index.html", "text/html; charset=utf-8", None),
                ("/app.js", "text/javascript; charset=utf-8", b"console.log('painter');"),
                ("/style.css", "text/css; charset=utf-8", b"body { margin: 0 }"),
                ("/sub/", "text/html; charset=utf-8", b"the sub page"),
                ("/sub", "text/html; charset=utf-8", b"the sub page"),
                ("/app.js?v=3", "text/javascript; charset=utf-8", None)]
    for path, content, data in expected:
        status, headers, body = call(plain_rest, "GET", path)
        assert (status, headers["Content-Type"]) == (200, content), path
        assert data is None or body == data
    status, headers, body = call(plain_rest, "HEAD", "/")
    assert status == 200 and body == b""
    assert headers["Content-Length"] == str(len((static_root / "index.html").read_bytes()))

    secret_path = static_root.parent / "secret.txt"
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt",
                 "/..%2fsecret.txt", "/..%5csecret.txt", "/sub/../../secret.txt",
                 "/sub/%2e%2e/%2e%2e/secret.txt", "//../secret.txt", "/escape.txt",
                 "/.hidden", "/%2ehidden", "/%00", "/nothing.js", f"/{secret_path}",
                 f"/..{secret_path}"):
        status, headers, body = call(plain_rest, "GET", path)
        assert status == 404, path
        assert SECRET.encode() not in body and "error" in json.loads(body)
    assert call(plain_rest, "POST", "/", "{}")[0] == 404
    assert get(small_rest, "/") == (404, {"error": "Not found: GET /"})
    assert_healthy(plain_rest, "plain")


def test_cors_headers_only_when_asked_for(plain_rest, small_rest):
    _, headers, _ = call(plain_rest, "GET", "/v1/models/plain")
    assert not any(name.lower().startswith("access-control") for name in headers)

    status, headers, _ = call(small_rest, "GET", "/v1/models/plain")
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "POST, GET"
    assert headers["Access-Control-Allow-Headers"] == "Content-Type"
    status, headers, body = call(small_rest, "OPTIONS", "/v1/models/plain:predict", headers={
        "Origin": "http://painter.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert (status, body) == (200, b"")
    assert headers["Access-Control-Allow-Origin"] == "*"


# -- lifecycle ----------------------------------------------------------------------------


def test_start_stop_and_start_errors(plain_server, tmp_path):
    server = RestServer(plain_server.manager, port=0)
    port = server.start()
    assert port > 0 and server.address == f"127.0.0.1:{port}"
    with pytest.raises(RestServerError, match="started already"):
        server.start()
    with pytest.raises(RestServerError, match="cannot listen"):
        RestServer(plain_server.manager, port=port).start()
    assert_healthy(server, "plain")
    assert server.stop(timeout=5)  # True: stopped within its bound
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert server.stop()  # again: harmless
    with pytest.raises(RestServerError, match="not a folder"):
        RestServer(plain_server.manager, port=0, static_dir=tmp_path / "missing").start()
    assert RestServer(plain_server.manager, host="::1", port=8501).address == "[::1]:8501"

    early = RestServer(plain_server.manager, port=0)  # bind first (before a model loads)
    port = early.bind()
    with pytest.raises(RestServerError, match="cannot listen"):
        RestServer(plain_server.manager, port=port).bind()
    assert early.start() == port
    assert_healthy(early, "plain")
    assert early.stop(timeout=5)
    unused = RestServer(plain_server.manager, port=0)
    port = unused.bind()
    assert unused.stop()  # bound, never started: the port is free again
    again = RestServer(plain_server.manager, port=port)
    assert again.bind() == port
    assert again.stop()


# -- the conversion layer, without sockets ------------------------------------------------


def tensors(document, **dtypes):
    request_format, protos = rest.request_tensors(document, dtypes)
    return request_format, {name: tf.make_ndarray(proto) for name, proto in protos.items()}


def refusal(function, *args) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(RequestError) as info:
        function(*args)
    return info.value.code, info.value.message


def test_json_to_tensors_follows_json_tensor_cc():
    string, int32, float32 = types_pb2.DT_STRING, types_pb2.DT_INT32, types_pb2.DT_FLOAT
    request_format, values = tensors({"instances": [{"b64": "aGVsbG8="}, "wörld"]}, text=string)
    assert request_format == rest.ROW
    assert values["text"].tolist() == [b"hello", "wörld".encode()]
    assert tensors({"inputs": {"b64": "AP8"}}, text=string)[1]["text"] == b"\x00\xff"
    assert refusal(rest.request_tensors, {"inputs": [{"b64": "***"}]}, {"t": string}) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Unable to base64 decode")
    assert refusal(rest.request_tensors, {"inputs": [{"b64": "AA==", "x": 1}]},
                   {"t": string}) == (grpc.StatusCode.INVALID_ARGUMENT,
                                      'JSON Value: {"b64":"AA==","x":1} not formatted '
                                      "correctly for base64 data")

    request_format, values = tensors({"inputs": [[1, 2.5], [float("nan"), -float("inf")]]},
                                     x=float32)
    assert request_format == rest.COLUMNAR and values["x"].dtype == np.float32
    assert np.array_equal(values["x"], np.array([[1, 2.5], [np.nan, -np.inf]], np.float32),
                          equal_nan=True)
    assert tensors({"inputs": 7}, x=int32)[1]["x"].shape == ()
    assert tensors({"inputs": [[], []]}, x=int32)[1]["x"].shape == (2, 0)
    assert tensors({"instances": [True, False]}, x=types_pb2.DT_BOOL)[1]["x"].tolist() == [
        True, False]
    assert refusal(rest.request_tensors, {"inputs": [16777217]}, {"x": float32}) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Cannot convert JSON value: 16777217 to float without loss of precision.")
    assert refusal(rest.request_tensors, {"inputs": [True]}, {"x": int32})[1] == (
        "JSON Value: true Type: True is not of expected type: int32")
    assert refusal(rest.request_tensors, {"inputs": [[1], 2]}, {"x": int32})[1] == (
        "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected at level: 2")
    assert refusal(rest.request_tensors, {"inputs": [1, [2]]}, {"x": int32})[1] == (
        "Encountered list at unexpected level: 1 expected < 1")
    assert refusal(rest.request_tensors, {"inputs": [0.5]}, {"x": types_pb2.DT_HALF}) == (
        grpc.StatusCode.UNIMPLEMENTED, "Conversion of JSON Value: 0.5 to type: half")
    assert refusal(rest.request_tensors, {"instances": [[1], [[2]]]}, {"x": int32})[1] == (
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting shape [1] but got: [1,1]")


def test_outputs_to_json_follows_json_tensor_cc():
    floats = np.array([[0.2, 3.0, 1e6, 1e-5, 0.1234567, np.nan, np.inf, -np.inf]], np.float32)
    text = rest.response_json({"scores": floats}, rest.ROW)
    assert text == ('{"predictions":[[0.2,3.0,1e+06,1e-05,0.123456702,NaN,Infinity,'
                    "-Infinity]]}")
    assert np.array_equal(np.array(json.loads(text)["predictions"], np.float32), floats,
                          equal_nan=True)
    outputs = {"image_bytes": np.array([b"\x00\xff", b"png"], dtype=object),
               "label": np.array([b"sky", b"sea"], dtype=object),
               "count": np.array([3, 2 ** 40], np.int64),
               "pixels": np.array([[7, 255], [0, 1]], np.uint8)}
    assert json.loads(rest.response_json(outputs, rest.ROW)) == {"predictions": [
        {"image_bytes": {"b64": "AP8="}, "label": "sky", "count": 3, "pixels": [7, 255]},
        {"image_bytes": {"b64": "cG5n"}, "label": "sea", "count": 2 ** 40, "pixels": [0, 1]}]}
    assert json.loads(rest.response_json(outputs, rest.COLUMNAR))["outputs"]["count"] == [
        3, 2 ** 40]
    assert rest.response_json({"x": np.array(5, np.int32)}, rest.COLUMNAR) == '{"outputs":5}'

    for array, name in ((np.zeros((1, 2), np.float16), "half"),
                        (np.zeros((1, 2), tf.bfloat16.as_numpy_dtype), "bfloat16")):
        assert refusal(rest.response_json, {"x": array}, rest.ROW) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Failed to write JSON value for tensor type: {name}")
    assert refusal(rest.response_json, {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))},
                   rest.ROW)[1] == "Tensor name: b has inconsistent batch size: 3 expecting: 2"
    assert refusal(rest.response_json, {"a": np.zeros(())}, rest.ROW)[1] == (
        "Tensor name: a has no shape information ")


# The HTTP code of each gRPC status is checked where the server answers one: refusals
# (400, 404, 501 above), a full queue (503, test_rest_traffic.py).


def test_an_error_body_is_json_whatever_the_message():
    assert json.loads(rest.error_json('say "hi"\n')) == {"error": 'say "hi"\n'}
