"""Serving under load: ``spade-serve``'s REST and gRPC sides with many concurrent clients.

Exports the demo's model (configs/demo.yaml: 64x64, 8 classes + instance edges; random
weights, the same compute as the trained one) and starts ``spade-serve`` in its own
process on 127.0.0.1. Then, every loop bounded in count and time, loopback only:

1. REST and gRPC at 1, 8, 64 and 256 concurrent clients (threads released together;
   REST once with a new connection per request, as curl and urllib do, and once with a
   kept-alive connection per client, as requests.Session and load tools): requests/s,
   p50/p99 latency, failed requests; with batching off and on
   (``--enable-batching`` with ``serving/deploy/batching_parameters.txt`` and, as TF
   Serving advises, ``--workers 16``: twice the batch size);
2. 16 slow uploads (headers and one body byte, then silence) and 300 idle connections
   held open while a status GET and a REST prediction are timed;
3. a new version copied in (hidden name, then renamed) while 8 REST and 8 gRPC clients
   run: failed requests and how long until the new version answered;
4. the server's peak RSS.

    python benchmarks/serving_load.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    REPO_ROOT,
    add_json_argument,
    format_table,
    machine,
    machine_line,
    progress,
    run_script,
    write_json,
)

MODEL = "demo"
BATCHING_FILE = REPO_ROOT / "serving" / "deploy" / "batching_parameters.txt"
CLIENT_COUNTS = (1, 8, 64, 256)
REQUEST_TIMEOUT = 120.0  # seconds, per request
PHASE_DEADLINE = 300.0  # seconds, per load phase
START_DEADLINE = 180.0
SLOW_UPLOADS, IDLE_CONNECTIONS = 16, 300


class Server:
    """``spade-serve`` in its own process, on two free loopback ports."""

    def __init__(self, base: Path, extra: list[str]):
        self.grpc_port, self.rest_port = _free_port(), _free_port()
        command = [sys.executable, "-m", "spade_cli.serve", "--model-base-path", str(base),
                   "--model-name", MODEL, "--port", str(self.grpc_port), "--rest-port",
                   str(self.rest_port), "--poll-seconds", "0.5", *extra]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.log: list[str] = []
        ready = threading.Event()

        def read() -> None:
            for line in self.process.stdout:
                self.log.append(line.rstrip())
                if "listening on" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_DEADLINE
        while not ready.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("spade-serve did not start:\n"
                                   + "\n".join(self.log[-20:]))

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def export_demo_model(folder: Path) -> Path:
    """The demo config's networks with random weights, exported; returns the base path."""
    from spade_tf.config import load_config
    from spade_tf.export import export_model
    from spade_tf.model_dir import ModelDir, save_model_dir
    from spade_tf.models import build_encoder, build_generator

    config = load_config(REPO_ROOT / "configs" / "demo.yaml")
    encoder = build_encoder(config.model) if config.model.use_vae else None
    save_model_dir(folder / "model", ModelDir(config, build_generator(config.model),
                                              encoder=encoder))
    export_model(folder / "model", folder / "exports", MODEL)
    return folder / "exports" / MODEL


# -- clients ---------------------------------------------------------------------------


class Requests:
    """One request body per client kind, for the demo model's serving_default."""

    def __init__(self, size: int, classes: int):
        rng = np.random.default_rng(0)
        self.labels = rng.integers(0, classes, (1, size, size)).astype(np.int32)
        self.instances = np.zeros_like(self.labels)
        self.rest_body = json.dumps({"instances": [{
            "label_ids": self.labels[0].tolist(),
            "instance_ids": self.instances[0].tolist()}]}).encode()


def rest_call(port: int, method: str, path: str, body: bytes | None = None,
              timeout: float = REQUEST_TIMEOUT) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body,
                           headers={"Content-Type": "application/json"} if body else {})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def rest_predict(port: int, requests: Requests, keep_alive: bool = False
                 ) -> Callable[[], None]:
    """A REST prediction: a new connection each (curl, urllib), or one kept-alive
    connection per client thread (requests.Session, wrk, hey)."""
    path = f"/v1/models/{MODEL}:predict"
    headers = {"Content-Type": "application/json"}
    local = threading.local()

    def call() -> None:
        if not keep_alive:
            status = rest_call(port, "POST", path, requests.rest_body)
        else:
            if getattr(local, "connection", None) is None:
                local.connection = http.client.HTTPConnection("127.0.0.1", port,
                                                              timeout=REQUEST_TIMEOUT)
                local.connection.connect()
                # As curl and Go's client do: http.client writes headers and body apart,
                # and Nagle's algorithm would hold the body for the server's delayed ACK.
                local.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                local.connection.request("POST", path, body=requests.rest_body,
                                         headers=headers)
                response = local.connection.getresponse()
                response.read()
                status = response.status
            except Exception:
                local.connection.close()
                local.connection = None
                raise
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
    return call


def grpc_predict(port: int, requests: Requests) -> Callable[[], None]:
    from serving.client import SpadeClient

    client = SpadeClient(f"127.0.0.1:{port}", MODEL, timeout=REQUEST_TIMEOUT, retries=0)
    inputs = {"label_ids": requests.labels, "instance_ids": requests.instances}
    return lambda: client.predict(inputs)


def run_clients(call: Callable[[], None], clients: int, per_client: int) -> dict:
    """``clients`` threads released together, each making ``per_client`` calls."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    deadline = time.monotonic() + PHASE_DEADLINE

    def work() -> None:
        barrier.wait()
        for _ in range(per_client):
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            try:
                call()
            except Exception as error:  # every kind of failure counts
                with lock:
                    failures.append(f"{type(error).__name__}: {error}"[:120])
                continue
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join(max(1.0, deadline - time.monotonic() + 5))
    elapsed = time.perf_counter() - start
    done = len(latencies)
    return {"clients": clients, "requests": clients * per_client, "ok": done,
            "failed": len(failures), "failures": sorted(set(failures))[:3],
            "requests_per_s": round(done / elapsed, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1)
            if latencies else None}


def per_client(clients: int, quick: bool) -> int:
    total = 160 if quick else 320
    return max(2, min(30, total // clients))


# -- phases ----------------------------------------------------------------------------


def load_phase(server: Server, requests: Requests, quick: bool, label: str) -> list[dict]:
    rows = []
    calls = ((rest_predict(server.rest_port, requests), "REST"),
             (rest_predict(server.rest_port, requests, keep_alive=True), "REST keep-alive"),
             (grpc_predict(server.grpc_port, requests), "gRPC"))
    for call, transport in calls:
        call()  # one request first: nothing below pays a one-off cost
        for clients in CLIENT_COUNTS:
            progress(f"{label}: {transport}, {clients} clients")
            row = run_clients(call, clients, per_client(clients, quick))
            rows.append({"batching": label, "transport": transport, **row})
    return rows


def slow_clients_phase(server: Server, requests: Requests) -> dict:
    """Slow uploads and idle connections held open while two requests are timed."""
    held: list[socket.socket] = []
    try:
        for _ in range(SLOW_UPLOADS):
            sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)
            sock.sendall(f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
                         .encode())
            held.append(sock)
        for _ in range(IDLE_CONNECTIONS):
            held.append(socket.create_connection(("127.0.0.1", server.rest_port), timeout=10))
        time.sleep(0.5)
        start = time.perf_counter()
        status = rest_call(server.rest_port, "GET", f"/v1/models/{MODEL}", timeout=30)
        status_s = time.perf_counter() - start
        start = time.perf_counter()
        rest_predict(server.rest_port, requests)()
        predict_s = time.perf_counter() - start
    finally:
        for sock in held:
            sock.close()
    return {"slow_uploads": SLOW_UPLOADS, "idle_connections": IDLE_CONNECTIONS,
            "status_get_ms": round(1000 * status_s, 1), "status": status,
            "prediction_ms": round(1000 * predict_s, 1)}


def new_version_phase(server: Server, base: Path, requests: Requests) -> dict:
    """A version copied in while 8 REST and 8 gRPC clients keep calling."""
    stop = threading.Event()
    failures: list[str] = []
    counts = [0]
    calls = [rest_predict(server.rest_port, requests)] * 8 + \
        [grpc_predict(server.grpc_port, requests)] * 8

    def work(call: Callable[[], None]) -> None:
        while not stop.is_set():
            try:
                call()
                counts[0] += 1
            except Exception as error:  # every kind of failure counts
                failures.append(f"{type(error).__name__}: {error}"[:120])

    threads = [threading.Thread(target=work, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    start = time.perf_counter()
    staging = base / ".copy-2"
    shutil.copytree(base / "1", staging)
    staging.rename(base / "2")
    served = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
        connection.request("GET", f"/v1/models/{MODEL}/versions/2")
        answer = connection.getresponse().read()
        connection.close()
        if b"AVAILABLE" in answer:
            served = time.perf_counter() - start
            break
        time.sleep(0.1)
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT)
    return {"clients": len(calls), "requests": counts[0], "failed": len(failures),
            "failures": sorted(set(failures))[:3],
            "new_version_served_after_s": round(served, 1) if served else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per phase")
    add_json_argument(parser)
    args = parser.parse_args()
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="spade-load-"))
    try:
        progress("exporting the demo model (random weights)")
        base = export_demo_model(work)
        from spade_tf.config import load_config

        model = load_config(REPO_ROOT / "configs" / "demo.yaml").model
        requests = Requests(model.crop_size, model.num_classes)
        figures: dict = {"machine": info, "model": "configs/demo.yaml", "load": []}
        # With batching, TF Serving's advice: at least twice max_batch_size (8) threads.
        for label, extra in (("off", []), ("on", ["--enable-batching",
                                                  "--batching-parameters-file",
                                                  str(BATCHING_FILE), "--workers", "16"])):
            progress(f"starting spade-serve, batching {label}")
            server = Server(base, extra)
            try:
                figures["load"] += load_phase(server, requests, args.quick, label)
                if label == "off":
                    progress("slow uploads and idle connections")
                    figures["slow_clients"] = slow_clients_phase(server, requests)
                    progress("a new version under load")
                    figures["new_version"] = new_version_phase(server, base, requests)
                figures[f"peak_rss_mib_batching_{label}"] = round(server.peak_rss_mib())
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(figures)
    write_json(args.json, figures)


def report(figures: dict) -> None:
    print(machine_line(figures["machine"]))
    rows = [(row["batching"], row["transport"], row["clients"], row["requests"], row["failed"],
             row["requests_per_s"], row["p50_ms"], row["p99_ms"]) for row in figures["load"]]
    print(format_table(["batching", "transport", "clients", "requests", "failed",
                        "requests/s", "p50 ms", "p99 ms"], rows, "llrrrrrr"))
    for row in figures["load"]:
        if row["failures"]:
            print(f"  {row['batching']} {row['transport']} {row['clients']}: {row['failures']}")
    slow = figures["slow_clients"]
    print(f"behind {slow['slow_uploads']} slow uploads and {slow['idle_connections']} idle "
          f"connections: status GET {slow['status_get_ms']} ms (HTTP {slow['status']}), "
          f"prediction {slow['prediction_ms']} ms")
    new = figures["new_version"]
    print(f"new version under load: {new['requests']} requests from {new['clients']} clients, "
          f"{new['failed']} failed; version 2 served {new['new_version_served_after_s']} s "
          "after the copy")
    by = {(row["batching"], row["transport"], row["clients"]): row for row in figures["load"]}
    grpc64 = by[("off", "gRPC", 64)]
    for transport in ("REST", "REST keep-alive"):
        print(f"{transport}/gRPC throughput at 64 clients: "
              f"{by[('off', transport, 64)]['requests_per_s'] / grpc64['requests_per_s']:.2f}")
    for transport in ("REST", "REST keep-alive", "gRPC"):
        on, off = by[("on", transport, 64)], by[("off", transport, 64)]
        print(f"batching on/off at 64 {transport} clients: "
              f"{on['requests_per_s'] / off['requests_per_s']:.2f}x images/s")
    print(f"server peak RSS: {figures['peak_rss_mib_batching_off']} MiB (batching off), "
          f"{figures['peak_rss_mib_batching_on']} MiB (on)")


if __name__ == "__main__":
    run_script(main)
