"""The REST port under traffic: a full queue, slow uploads, idle connections, bursts.

Real HTTP on 127.0.0.1 against the served test model; every loop is bounded in count and
every call has a deadline. Predictions are held back where a test needs them running
(``HeldApi``), so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading

import numpy as np
import pytest

from serving.rest import RestApi, RestServer
from serving.rest.routes import is_prediction
from spade_tf import signatures as sig

DEADLINE = 30.0


class HeldApi(RestApi):
    """The REST routes, with predictions held until ``release`` is set."""

    def __init__(self, manager):
        super().__init__(manager)
        self.release = threading.Event()
        self.running = threading.Semaphore(0)

    def handle(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if is_prediction(method, path):
            self.running.release()
            assert self.release.wait(DEADLINE), "the test never released the prediction"
        return super().handle(method, path, body)


def request(port: int, method: str, path: str, body: bytes | None = None,
            timeout: float = DEADLINE) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def predict_body(model) -> bytes:
    labels = model.random_maps(seed=7)[sig.LABEL_IDS]
    return json.dumps({"instances": labels.tolist()}).encode()


@pytest.fixture
def held(plain_server):
    api = HeldApi(plain_server.manager)
    server = RestServer(plain_server.manager, port=0, workers=1, max_queued=1, api=api,
                        body_timeout=1.0)
    server.start()
    yield server, api
    api.release.set()
    assert server.stop(timeout=10)


def test_a_full_queue_is_answered_unavailable_while_status_answers(held, plain_model):
    server, api = held
    body = predict_body(plain_model)
    answers: list[tuple[int, dict]] = []

    def predict() -> None:
        answers.append(request(server.port, "POST", "/v1/models/plain:predict", body))

    running = threading.Thread(target=predict)
    running.start()
    assert api.running.acquire(timeout=DEADLINE)  # one prediction holds the only worker
    waiting = threading.Thread(target=predict)
    waiting.start()
    # The second waits for the worker; wait until the server has admitted it.
    for _ in range(200):
        if server.app.queued == 1:
            break
        threading.Event().wait(0.05)
    assert server.app.queued == 1
    status, answer = request(server.port, "POST", "/v1/models/plain:predict", body)
    assert status == 503  # TF Serving's HTTP code for UNAVAILABLE
    assert "queue of REST predictions is full (1 waiting for 1 workers)" in answer["error"]
    # Status and metadata never wait behind predictions.
    assert request(server.port, "GET", "/v1/models/plain")[0] == 200
    assert request(server.port, "GET", "/v1/models/plain/metadata")[0] == 200
    api.release.set()
    running.join(DEADLINE)
    waiting.join(DEADLINE)
    assert [status for status, _ in answers] == [200, 200]
    assert answers[0][1] == answers[1][1]


def test_a_slow_upload_gets_408_and_holds_no_worker(held, plain_model):
    server, api = held
    api.release.set()
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
            for _ in range(50)]
    try:
        slow.sendall(b"POST /v1/models/plain:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        # Meanwhile the only worker serves others: the slow body was never given a slot.
        status, answer = request(server.port, "POST", "/v1/models/plain:predict",
                                 predict_body(plain_model))
        assert status == 200 and len(answer["predictions"]) == 1
        response = http.client.HTTPResponse(slow)
        response.begin()  # within the 1 s body timeout, plus scheduling
        assert response.status == 408
        assert response.getheader("Connection") == "close"
        assert json.loads(response.read()) == {"error": (
            "request body not received within 1 s (1 of 100 bytes arrived): send it at once, "
            "or raise --rest-body-timeout")}
    finally:
        slow.close()
        for sock in idle:
            sock.close()
    assert request(server.port, "GET", "/v1/models/plain")[0] == 200


def test_a_burst_of_new_connections_is_served_without_resets(plain_server, plain_model):
    """More clients at once than socketserver's backlog of 5 ever took."""
    server = RestServer(plain_server.manager, port=0, workers=2)
    server.start()
    body = predict_body(plain_model)
    clients = 96
    barrier = threading.Barrier(clients)
    answers: list[object] = []

    def client() -> None:
        barrier.wait(DEADLINE)
        try:
            answers.append(request(server.port, "POST", "/v1/models/plain:predict", body,
                                   timeout=120))
        except OSError as error:  # a reset would land here
            answers.append(error)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
    finally:
        assert server.stop(timeout=10)
    failures = [answer for answer in answers if not isinstance(answer, tuple)]
    assert failures == [] and len(answers) == clients
    images = [np.asarray(answer[1]["predictions"]) for answer in answers]
    assert all(status == 200 for status, _ in answers)
    assert all(np.array_equal(image, images[0]) for image in images)
