"""The embedded server over real gRPC on 127.0.0.1, with hand-built TF Serving requests."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import model_manager
from serving import server as server_module
from serving.client import SpadeClient
from serving.model_manager import ModelManager
from serving.server import PREDICTION_SERVICE, ServerStartError, SpadeServer
from spade_cli.serve import main as serve_main
from spade_cli.synthesize import main as synthesize_main
from spade_tf import signatures as sig

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0
MESSAGE_LIMIT = 256 * 1024 * 1024
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


class Stubs:
    """The stock stubs on one channel with raised message limits."""

    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_send_message_length", MESSAGE_LIMIT),
            ("grpc.max_receive_message_length", MESSAGE_LIMIT)])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)


@pytest.fixture
def vae_stubs(vae_server):
    stubs = Stubs(vae_server.address)
    yield stubs
    stubs.channel.close()


@pytest.fixture
def plain_stubs(plain_server):
    stubs = Stubs(plain_server.address)
    yield stubs
    stubs.channel.close()


def make_request(model_name: str, signature: str = "", version: int | None = None,
                 output_filter=(), **inputs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return request


def outputs_of(response: predict_pb2.PredictResponse) -> dict[str, np.ndarray]:
    return {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}


# -- results equal the in-memory paths ------------------------------------------------


def test_default_signature_equals_in_process_and_keras(plain_stubs, plain_model):
    maps = plain_model.random_maps(seed=1, batch=2)
    # An empty signature name means serving_default, as in TF Serving.
    response = plain_stubs.prediction.Predict(make_request(plain_model.name, **maps),
                                              timeout=DEADLINE)
    assert response.model_spec.name == plain_model.name
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == sig.DEFAULT_SIGNATURE
    image = outputs_of(response)[sig.IMAGE]
    assert image.dtype == np.uint8 and image.shape == (2, 64, 64, 3)
    assert image.std() > 0
    np.testing.assert_array_equal(image, plain_model.in_process(sig.DEFAULT_SIGNATURE,
                                                                **maps)[sig.IMAGE])
    np.testing.assert_array_equal(image, plain_model.keras_image(maps))


def test_seeded_signature_equals_in_process_and_keras(vae_stubs, vae_model):
    maps = vae_model.random_maps(seed=2, batch=2)
    seeds = np.array([3, 4], np.int64)
    request = make_request(vae_model.name, sig.SEEDED_SIGNATURE, **maps, seed=seeds)
    image = outputs_of(vae_stubs.prediction.Predict(request, timeout=DEADLINE))[sig.IMAGE]
    np.testing.assert_array_equal(
        image, vae_model.in_process(sig.SEEDED_SIGNATURE, **maps, seed=seeds)[sig.IMAGE])
    np.testing.assert_array_equal(image,
                                  vae_model.keras_image(maps, vae_model.seeded_latent(seeds)))
    again = outputs_of(vae_stubs.prediction.Predict(request, timeout=DEADLINE))[sig.IMAGE]
    np.testing.assert_array_equal(again, image)  # reproducible
    assert not np.array_equal(image[0], image[1]) and image.std() > 0


def test_style_signature_and_encode_style(vae_stubs, vae_model):
    maps = vae_model.random_maps(seed=3)
    style = np.random.default_rng(3).integers(0, 256, (1, 40, 56, 3)).astype(np.uint8)
    response = vae_stubs.prediction.Predict(
        make_request(vae_model.name, sig.STYLE_SIGNATURE, **maps, style_image=style),
        timeout=DEADLINE)
    assert response.model_spec.signature_name == sig.STYLE_SIGNATURE
    image = outputs_of(response)[sig.IMAGE]
    np.testing.assert_array_equal(
        image, vae_model.in_process(sig.STYLE_SIGNATURE, **maps, style_image=style)[sig.IMAGE])
    np.testing.assert_array_equal(image,
                                  vae_model.keras_image(maps, vae_model.style_latent(style)))
    encoded = outputs_of(vae_stubs.prediction.Predict(
        make_request(vae_model.name, sig.ENCODE_SIGNATURE, style_image=style),
        timeout=DEADLINE))
    expected = vae_model.in_process(sig.ENCODE_SIGNATURE, style_image=style)
    assert sorted(encoded) == [sig.LOG_VARIANCE, sig.MEAN]
    for alias in (sig.MEAN, sig.LOG_VARIANCE):
        np.testing.assert_array_equal(encoded[alias], expected[alias])


def test_output_filter_returns_only_the_named_outputs(vae_stubs, vae_model):
    style = np.full((1, 32, 32, 3), 200, np.uint8)
    response = vae_stubs.prediction.Predict(
        make_request(vae_model.name, sig.ENCODE_SIGNATURE, output_filter=[sig.MEAN],
                     style_image=style), timeout=DEADLINE)
    assert list(response.outputs) == [sig.MEAN]
    np.testing.assert_array_equal(
        outputs_of(response)[sig.MEAN],
        vae_model.in_process(sig.ENCODE_SIGNATURE, style_image=style)[sig.MEAN])


# -- errors: TF Serving's codes, and the server keeps serving --------------------------


def _good(model) -> dict:
    return {**model.random_maps(seed=4), sig.SEED: np.array([7], np.int64)}


def _with(model, **changes) -> predict_pb2.PredictRequest:
    inputs = {**_good(model), **changes}
    return make_request(model.name, sig.SEEDED_SIGNATURE,
                        **{alias: value for alias, value in inputs.items() if value is not None})


def _truncated_content(model) -> predict_pb2.PredictRequest:
    request = _with(model)
    proto = request.inputs[sig.LABEL_IDS]
    proto.tensor_content = proto.tensor_content[:-3]  # not a whole number of int32 values
    return request


def _huge_declared_shape(model) -> predict_pb2.PredictRequest:
    request = _with(model)
    # A few bytes on the wire that declare 100000 x 64 x 64 int32 values (1.6 GB).
    request.inputs[sig.LABEL_IDS].CopyFrom(tf.make_tensor_proto(0, tf.int32, [100000, 64, 64]))
    return request


def _spec_change(model, **fields) -> predict_pb2.PredictRequest:
    request = _with(model)
    for field, value in fields.items():
        if field == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, field, value)
    return request


def _filtered(model) -> predict_pb2.PredictRequest:
    request = _with(model)
    request.output_filter.append("no_such_output")
    return request


OK_MAPS = np.zeros((1, 64, 64), np.int32)
ERRORS = {
    "unknown model": (lambda m: _spec_change(m, name="nope"),
                      grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    "missing model name": (lambda m: _spec_change(m, name=""),
                           grpc.StatusCode.INVALID_ARGUMENT, "Missing model name"),
    "unknown version": (lambda m: _spec_change(m, version=99),
                        grpc.StatusCode.NOT_FOUND, "Specific(spade, 99)"),
    "version label": (lambda m: _spec_change(m, version_label="stable"),
                      grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label"),
    "unknown signature": (lambda m: _spec_change(m, signature_name="nope"),
                          grpc.StatusCode.FAILED_PRECONDITION, 'signature key "nope" not found'),
    "wrong dtype": (lambda m: _with(m, label_ids=OK_MAPS.astype(np.uint8)),
                    grpc.StatusCode.INVALID_ARGUMENT, "'label_ids' must be int32"),
    "wrong seed dtype": (lambda m: _with(m, seed=np.array([7], np.int32)),
                         grpc.StatusCode.INVALID_ARGUMENT, "'seed' must be int64"),
    "missing input": (lambda m: _with(m, instance_ids=None),
                      grpc.StatusCode.INVALID_ARGUMENT, "missing ['instance_ids']"),
    "extra input": (lambda m: _with(m, junk=np.zeros(1, np.float32)),
                    grpc.StatusCode.INVALID_ARGUMENT, "not in the signature ['junk']"),
    "unparsable tensor": (_truncated_content, grpc.StatusCode.INVALID_ARGUMENT,
                          "tensor parsing error: label_ids"),
    "wrong rank": (lambda m: _with(m, label_ids=OK_MAPS[0], instance_ids=OK_MAPS[0]),
                   grpc.StatusCode.INVALID_ARGUMENT, "must have shape [-1, -1, -1]"),
    "id out of range": (lambda m: _with(m, label_ids=np.full((1, 64, 64), 9, np.int32)),
                        grpc.StatusCode.INVALID_ARGUMENT, "found id] [9]"),
    "wrong image size": (lambda m: _with(m, label_ids=np.zeros((1, 32, 64), np.int32),
                                         instance_ids=np.zeros((1, 32, 64), np.int32)),
                         grpc.StatusCode.INVALID_ARGUMENT, "label_ids must be [batch, 64, 64]"),
    "over-size batch": (lambda m: _with(m, label_ids=np.zeros((9, 64, 64), np.int32),
                                        instance_ids=np.zeros((9, 64, 64), np.int32),
                                        seed=np.arange(9, dtype=np.int64)),
                        grpc.StatusCode.INVALID_ARGUMENT, "limit of 8 examples"),
    "over-size declared shape": (_huge_declared_shape, grpc.StatusCode.INVALID_ARGUMENT,
                                 "larger than this server's limit"),
    "unknown output alias": (_filtered, grpc.StatusCode.INVALID_ARGUMENT,
                             "output tensor alias not found in signature: no_such_output"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_request_gets_its_code_and_the_server_keeps_serving(case, vae_stubs, vae_model):
    build, code, words = ERRORS[case]
    with pytest.raises(grpc.RpcError) as raised:
        vae_stubs.prediction.Predict(build(vae_model), timeout=DEADLINE)
    assert raised.value.code() == code, raised.value.details()
    assert words in raised.value.details()
    response = vae_stubs.prediction.Predict(_with(vae_model), timeout=DEADLINE)
    assert outputs_of(response)[sig.IMAGE].shape == (1, 64, 64, 3)


def test_over_size_style_image_is_refused(vae_stubs, vae_model):
    style = np.zeros((1, 1100, 1000, 3), np.uint8)  # over the export's 1024 * 1024 pixels
    with pytest.raises(grpc.RpcError) as raised:
        vae_stubs.prediction.Predict(
            make_request(vae_model.name, sig.ENCODE_SIGNATURE, style_image=style),
            timeout=DEADLINE)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit of 1048576 pixels" in raised.value.details()


def test_still_answers_correctly_after_all_the_bad_requests(vae_stubs, vae_model):
    inputs = _good(vae_model)
    response = vae_stubs.prediction.Predict(_with(vae_model), timeout=DEADLINE)
    np.testing.assert_array_equal(outputs_of(response)[sig.IMAGE],
                                  vae_model.in_process(sig.SEEDED_SIGNATURE, **inputs)[sig.IMAGE])


# -- metadata, status, health, unimplemented methods ----------------------------------


def _metadata(stubs, name, **request_fields):
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_pb2.ModelSpec(name=name), **request_fields)
    return stubs.prediction.GetModelMetadata(request, timeout=DEADLINE)


def _signature_map(response) -> dict:
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    return {name: ({alias: info.dtype for alias, info in signature.inputs.items()},
                   {alias: info.dtype for alias, info in signature.outputs.items()})
            for name, signature in signature_map.signature_def.items()}


def test_metadata_lists_the_documented_signatures(vae_stubs, plain_stubs, vae_model,
                                                  plain_model):
    response = _metadata(vae_stubs, vae_model.name, metadata_field=["signature_def"])
    assert response.model_spec.name == vae_model.name
    assert response.model_spec.version.value == 1
    int32, int64, uint8, float32 = (tf.int32.as_datatype_enum, tf.int64.as_datatype_enum,
                                    tf.uint8.as_datatype_enum, tf.float32.as_datatype_enum)
    maps = {sig.LABEL_IDS: int32, sig.INSTANCE_IDS: int32}
    image = {sig.IMAGE: uint8}
    string = tf.string.as_datatype_enum
    pngs = {sig.LABEL_PNG: string, sig.INSTANCE_PNG: string}
    png_out = {sig.IMAGE_PNG: string}
    assert _signature_map(response) == {
        sig.DEFAULT_SIGNATURE: (maps, image),
        sig.SEEDED_SIGNATURE: ({**maps, sig.SEED: int64}, image),
        sig.STYLE_SIGNATURE: ({**maps, sig.STYLE_IMAGE: uint8}, image),
        sig.ENCODE_SIGNATURE: ({sig.STYLE_IMAGE: uint8},
                               {sig.MEAN: float32, sig.LOG_VARIANCE: float32}),
        sig.PNG_SIGNATURE: (pngs, png_out),
        sig.PNG_SEEDED_SIGNATURE: ({**pngs, sig.SEED: int64}, png_out),
        sig.PNG_STYLE_SIGNATURE: ({**pngs, sig.STYLE_PNG: string}, png_out),
        sig.MODEL_INFO_SIGNATURE: ({sig.MODEL_INFO_REQUEST: int32}, {sig.METADATA_JSON: string}),
    }
    plain = _metadata(plain_stubs, plain_model.name, metadata_field=["signature_def"])
    assert _signature_map(plain) == {
        sig.DEFAULT_SIGNATURE: ({sig.LABEL_IDS: int32}, image),
        sig.PNG_SIGNATURE: ({sig.LABEL_PNG: string}, png_out),
        sig.MODEL_INFO_SIGNATURE: ({sig.MODEL_INFO_REQUEST: int32}, {sig.METADATA_JSON: string}),
    }


@pytest.mark.parametrize("fields, code", [
    ({}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"metadata_field": ["graph"]}, grpc.StatusCode.INVALID_ARGUMENT),
])
def test_metadata_refuses_missing_or_unknown_fields(vae_stubs, vae_model, fields, code):
    with pytest.raises(grpc.RpcError) as raised:
        _metadata(vae_stubs, vae_model.name, **fields)
    assert raised.value.code() == code


def test_model_status_says_available(vae_stubs, vae_model):
    def status(**spec):
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(**spec))
        return vae_stubs.models.GetModelStatus(request, timeout=DEADLINE)

    response = status(name=vae_model.name)
    assert [(s.version, s.state) for s in response.model_version_status] == [(1, AVAILABLE)]
    response = status(name=vae_model.name, version={"value": 1})
    assert [(s.version, s.state) for s in response.model_version_status] == [(1, AVAILABLE)]
    for spec in ({"name": vae_model.name, "version": {"value": 5}}, {"name": "nope"}):
        with pytest.raises(grpc.RpcError) as raised:
            status(**spec)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_service_says_serving(vae_stubs):
    for service in ("", PREDICTION_SERVICE):
        answer = vae_stubs.health.Check(health_pb2.HealthCheckRequest(service=service),
                                        timeout=DEADLINE)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_classify_is_unimplemented(vae_stubs, vae_model):
    request = classification_pb2.ClassificationRequest(
        model_spec=model_pb2.ModelSpec(name=vae_model.name))
    with pytest.raises(grpc.RpcError) as raised:
        vae_stubs.prediction.Classify(request, timeout=DEADLINE)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- version folders ------------------------------------------------------------------


def test_only_integer_folders_are_versions_and_a_broken_one_does_not_stop_serving(
        tmp_path, plain_model, copy_version):
    base = tmp_path / "plain"
    copy_version(plain_model, base, 1)
    copy_version(plain_model, base, 4)
    (base / "4").rename(base / ".export-4-abc")  # an export in progress: hidden
    copy_version(plain_model, base, 5)
    (base / "5").rename(base / "tmp")
    (base / "3").mkdir()
    (base / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
    (base / "7").mkdir()  # no saved_model.pb (yet): not a version
    manager = ModelManager(base, plain_model.name, poll_seconds=0)
    assert sorted(manager.versions_on_disk()) == [1, 3]
    assert manager.poll().version == 1  # 3 fails, so the older 1 is served
    states = manager.states(model_pb2.ModelSpec(name=plain_model.name))
    assert states[1].state == AVAILABLE
    assert states[3].state == END and states[3].error
    assert manager.poll() is None  # the broken version is not retried while unchanged


def test_start_errors(tmp_path, vae_server, vae_model):
    with pytest.raises(ServerStartError, match="not a folder"):
        SpadeServer(tmp_path / "missing", port=0).start()
    with pytest.raises(ServerStartError, match="cannot listen on 127.0.0.1"):
        SpadeServer(vae_model.base, port=vae_server.port).start()  # the port is taken
    broken = tmp_path / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "1" / "saved_model.pb").write_bytes(b"junk")
    with pytest.raises(ServerStartError, match="could not load version 1"):
        SpadeServer(broken, port=0).start()


def test_start_refuses_an_export_base_or_a_version_folder(vae_model):
    exports = vae_model.base.parent
    with pytest.raises(ServerStartError, match=f"give --model-base-path {exports / 'spade'}"):
        SpadeServer(exports, vae_model.name, port=0).start()
    with pytest.raises(ServerStartError,
                       match=f"give its parent: --model-base-path {vae_model.base}"):
        SpadeServer(vae_model.version_dir, vae_model.name, port=0).start()


INTERNALS = ("{{", "[[", "[Op:", "node ", "Graph execution error")


@pytest.mark.parametrize("case", ["id out of range", "wrong image size", "over-size batch"])
def test_in_graph_refusals_carry_no_graph_internals(case, vae_stubs, vae_model):
    build, code, words = ERRORS[case]
    with pytest.raises(grpc.RpcError) as raised:
        vae_stubs.prediction.Predict(build(vae_model), timeout=DEADLINE)
    details = raised.value.details()
    # TF Serving's wording of the check (what its clients parse), minus node and op names.
    assert details.startswith("assertion failed: ["), details
    assert not [part for part in INTERNALS if part in details], details


def _slow_load_server(base, name, monkeypatch):
    """A polling server whose next version load blocks until ``release`` is set."""
    loading, release = threading.Event(), threading.Event()
    real = model_manager.ServableVersion

    def slow(*args, **kwargs):
        loading.set()
        release.wait(60)
        return real(*args, **kwargs)

    server = SpadeServer(base, name, port=0, poll_seconds=0.05)
    server.start()
    monkeypatch.setattr(model_manager, "ServableVersion", slow)
    return server, loading, release


def test_stop_waits_for_a_load_in_progress_and_nothing_is_swapped_in_after(
        tmp_path, plain_model, copy_version, monkeypatch):
    base = tmp_path / "plain"
    copy_version(plain_model, base, 1)
    spec = model_pb2.ModelSpec(name=plain_model.name)
    real_class = model_manager.ServableVersion

    # A load that outlasts stop()'s bound: stop returns, the late version is dropped.
    server, loading, release = _slow_load_server(base, plain_model.name, monkeypatch)
    monkeypatch.setattr(server_module, "POLL_STOP_SECONDS", 0.5)
    copy_version(plain_model, base, 2)
    assert loading.wait(30)
    poll_thread = server.manager._thread
    joins = []

    def join(timeout=None):  # the poll thread's, as stop() calls it
        joins.append(timeout)
        threading.Thread.join(poll_thread, timeout)

    monkeypatch.setattr(poll_thread, "join", join)
    assert server.stop(grace=0).wait(10)
    # It waited for the load, within the bound: the one join had up to 0.5 s; the load
    # was still blocked when stop() returned.
    assert len(joins) == 1 and 0 < joins[0] <= 0.5, joins
    assert poll_thread.is_alive() and not release.is_set()
    release.set()
    server.manager._thread.join(30)
    assert server.manager.current.version == 1
    state = server.manager.states(spec)[2]
    assert state.state == END and "stopped while it was loading" in state.error

    # A load that ends within the bound: stop() returns after the poll thread has ended.
    monkeypatch.setattr(model_manager, "ServableVersion", real_class)
    server, loading, release = _slow_load_server(base, plain_model.name, monkeypatch)
    monkeypatch.setattr(server_module, "POLL_STOP_SECONDS", 30.0)
    copy_version(plain_model, base, 3)
    assert loading.wait(30)
    threading.Timer(0.5, release.set).start()
    server.stop(grace=0).wait(10)
    assert not server.manager._thread.is_alive()
    assert server.manager.current.version == 2  # 3 was loading when stop() came
    assert server.manager.states(spec)[3].state == END


# -- spade-serve as a process ----------------------------------------------------------


def test_spade_serve_errors_exit_2_with_one_line(tmp_path, capsys):
    assert serve_main(["--model-base-path", str(tmp_path / "missing"), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("spade-serve: error: model base path") and error.count("\n") == 1
    with pytest.raises(SystemExit) as exited:
        serve_main(["--model-base-path", str(tmp_path), "--port", "70000"])
    assert exited.value.code == 2


def _read_line_with(process: subprocess.Popen, words: str, timeout: float) -> str:
    """The first stdout line containing ``words`` (read in a thread: readline blocks)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if words in line:
            return line
    raise AssertionError(f"spade-serve did not print {words!r} (rc {process.poll()}): "
                         f"{process.stderr.read() if process.poll() is not None else ''}")


@pytest.mark.timeout(120)
def test_spade_serve_process_serves_and_stops_on_sigterm(vae_model, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "spade_cli.serve", "--model-base-path", str(vae_model.base),
         "--model-name", vae_model.name, "--port", "0", "--poll-seconds", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _read_line_with(process, "listening on", timeout=90)
        address = line.rsplit(" ", 1)[1].strip()
        assert address.startswith("127.0.0.1:")  # loopback unless --host says otherwise
        stubs = Stubs(address)
        answer = stubs.health.Check(health_pb2.HealthCheckRequest(service=PREDICTION_SERVICE),
                                    timeout=DEADLINE)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stubs.channel.close()

        maps = vae_model.random_maps(seed=8)
        Image.fromarray(maps[sig.LABEL_IDS][0].astype(np.uint8)).save(tmp_path / "label.png")
        Image.fromarray(maps[sig.INSTANCE_IDS][0].astype(np.uint8)).save(tmp_path / "inst.png")
        assert synthesize_main(["--server", address, "--label", str(tmp_path / "label.png"),
                                "--instance", str(tmp_path / "inst.png"), "--seed", "5",
                                "--out", str(tmp_path / "out.png")]) == 0
        with SpadeClient(address, vae_model.name, timeout=DEADLINE) as client:
            expected = client.synthesize(maps[sig.LABEL_IDS][0], maps[sig.INSTANCE_IDS][0],
                                         seed=5)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0  # the bound only catches a hang
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
