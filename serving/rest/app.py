"""The REST port's ASGI application: TF Serving's REST API, the metrics and the painter.

What it adds to the routes (:mod:`serving.rest.routes`) is how a request meets the server:

- A request body is read completely, under a read timeout (408 when it passes), before
  the request asks for an inference slot: slow uploads hold a coroutine, never a slot.
- Predictions run on ``workers`` threads; up to ``max_queued`` more wait their turn, and
  beyond that the answer is TF Serving's UNAVAILABLE (HTTP 503) at once, never a reset.
- Status, metadata, metrics and the painter's files are answered on the event loop and
  never wait behind predictions.
- Bodies over ``max_body_bytes`` are refused (413) from their Content-Length, unread;
  chunked bodies are refused (411), as before.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from serving.rest.codes import error_json, http_status
from serving.rest.routes import API_PATH, RestApi, is_prediction
from serving.rest.static_files import content_type, static_file

Scope = Mapping
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_BODY_METHODS = ("POST", "PUT", "PATCH")  # whose bodies are read on /v1/ paths
_CORS_METHODS = "POST, GET"  # TF Serving's AddCORSHeaders
_CORS_HEADERS = "Content-Type"
# After refusing a body unread, its bytes are read and dropped while they keep coming
# (at most this long), so the client reads the answer instead of a reset.
_DRAIN_SECONDS = 2.0
_DRAIN_IDLE_SECONDS = 0.25
# Where the painter learns which models this server serves (not a TF Serving route).
PAINTER_MODELS_PATH = "/painter/models.json"


@dataclass(frozen=True)
class RestLimits:
    """How much a REST request may take of the server."""

    max_body_bytes: int
    body_timeout_seconds: float
    workers: int
    max_queued: int


class _Refusal(Exception):
    def __init__(self, status: int, message: str, drain: bool = True):
        super().__init__(message)
        self.status, self.message, self.drain = status, message, drain


class _Disconnected(Exception):
    """The client went away before its request was read."""


class RestApp:
    """ASGI application answering TF Serving's REST API (see the module docstring)."""

    def __init__(self, api: RestApi, limits: RestLimits, static_dir: Path | None = None,
                 cors_origin: str | None = None, metrics_path: str | None = None,
                 metrics: Callable[[], tuple[bytes, str]] | None = None,
                 model_names: Callable[[], list[str]] | None = None):
        self.api = api
        self.limits = limits
        self.static_dir = static_dir
        self.cors_origin = cors_origin
        self.metrics_path = metrics_path if metrics is not None else None
        self.metrics = metrics
        self.model_names = model_names
        self.executor = ThreadPoolExecutor(limits.workers, thread_name_prefix="spade-rest")
        self._admitted = 0  # predictions running or waiting (event-loop state only)
        self._slots: asyncio.Semaphore | None = None

    @property
    def queued(self) -> int:
        """Predictions waiting for a slot now."""
        return max(0, self._admitted - self.limits.workers)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        path = scope["raw_path"].decode("latin-1").split("#", 1)[0]
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope["headers"]}
        answer = _Answer(send, self.cors_origin, method == "HEAD")
        api = API_PATH.fullmatch(path) is not None
        # A body this server does not read would be taken for the next request.
        if not (api and method in _BODY_METHODS) and (
                headers.get("content-length", "0").strip() not in ("", "0")
                or "transfer-encoding" in headers):
            answer.close = True
        if answer.close:
            await _drain(receive)
        try:
            if api:
                await self._api(method, path, headers, receive, answer)
            elif method == "GET" and path == self.metrics_path:
                body, kind = self.metrics()
                await answer.send(200, body, kind)
            elif method == "GET" and path == PAINTER_MODELS_PATH and self.model_names:
                await answer.send(200, json.dumps({"models": self.model_names()}).encode())
            elif self.static_dir is not None and method in ("GET", "HEAD"):
                await self._static(path, answer)
            else:
                await answer.send(404, error_json(f"Not found: {method} {path}"))
        except _Refusal as refusal:
            if refusal.drain and "100-continue" not in headers.get("expect", "").lower():
                await _drain(receive)
            answer.close = True
            await answer.send(refusal.status, error_json(refusal.message))
        except _Disconnected:
            pass

    async def _api(self, method: str, path: str, headers: dict[str, str], receive: Receive,
                   answer: _Answer) -> None:
        if method == "OPTIONS" and self.cors_origin is not None:
            await answer.send(200, b"", "text/plain")  # a CORS preflight
            return
        body = await self._read_body(headers, receive) if method in _BODY_METHODS else b""
        if not is_prediction(method, path):
            status, result = self.api.handle(method, path, body)  # quick: on the loop
            await answer.send(status, result)
            return
        limits = self.limits
        if self._admitted >= limits.workers + limits.max_queued:
            status = http_status(grpc.StatusCode.UNAVAILABLE)
            await answer.send(status, error_json(
                f"this server's queue of REST predictions is full ({limits.max_queued} waiting "
                f"for {limits.workers} workers): retry with backoff"))
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(limits.workers)
        self._admitted += 1
        try:
            async with self._slots:
                loop = asyncio.get_running_loop()
                status, result = await loop.run_in_executor(
                    self.executor, self.api.handle, method, path, body)
        finally:
            self._admitted -= 1
        await answer.send(status, result)

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        limit = self.limits.max_body_bytes
        encoding = headers.get("transfer-encoding")
        if encoding and encoding.strip().lower() != "identity":
            raise _Refusal(411, f"request bodies sent with Transfer-Encoding: {encoding} are "
                                "not accepted: send Content-Length")
        length = int(headers.get("content-length", "0") or "0")  # h11 checked the digits
        if length > limit:
            raise _Refusal(413, f"request body of {length} bytes is larger than this server's "
                                f"limit of {limit} bytes")
        timeout = self.limits.body_timeout_seconds
        parts: list[bytes] = []

        async def read_all() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    return

        try:
            await asyncio.wait_for(read_all(), timeout)
        except TimeoutError:
            received = sum(map(len, parts))
            raise _Refusal(408, f"request body not received within {timeout:g} s ({received} "
                                f"of {length} bytes arrived): send it at once, or raise "
                                "--rest-body-timeout", drain=False) from None
        received = sum(map(len, parts))
        if received < length:
            raise _Refusal(400, f"request body ended after {received} of {length} bytes",
                           drain=False)
        body = b"".join(parts)
        if "gzip" in headers.get("content-encoding", "").lower():
            return _gunzip(body, limit)
        return body

    async def _static(self, path: str, answer: _Answer) -> None:
        target = static_file(self.static_dir, path)
        try:
            data = target.read_bytes() if target is not None else None
        except OSError:
            data = None
        if data is None:
            await answer.send(404, error_json(f"Not found: {path}"))
            return
        await answer.send(200, data, content_type(target), {"Cache-Control": "no-cache"})


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise _Refusal(400, f"Failed to uncompress the gzipped body: {error}",
                       drain=False) from None
    if len(data) > limit:
        raise _Refusal(413, f"gzip request body, uncompressed, is larger than this server's "
                            f"limit of {limit} bytes", drain=False)
    return data


async def _drain(receive: Receive) -> None:
    """Read and drop what is left of a body while it keeps coming (bounded), so that
    closing the connection after the answer does not reset it under the client."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _DRAIN_SECONDS
    try:
        while (left := deadline - loop.time()) > 0:
            message = await asyncio.wait_for(receive(), min(left, _DRAIN_IDLE_SECONDS))
            if message["type"] != "http.request" or not message.get("more_body"):
                return
    except TimeoutError:
        return


class _Answer:
    """One HTTP answer with this server's headers (CORS, nosniff, Connection: close)."""

    def __init__(self, send: Send, cors_origin: str | None, head: bool):
        self._send = send
        self.cors_origin = cors_origin
        self.head = head
        self.close = False

    async def send(self, status: int, body: bytes, kind: str = "application/json",
                   extra: Mapping[str, str] | None = None) -> None:
        headers = [("Content-Type", kind), ("Content-Length", str(len(body))),
                   ("X-Content-Type-Options", "nosniff"), ("Server", "spade-serve")]
        if self.cors_origin is not None:
            headers += [("Access-Control-Allow-Origin", self.cors_origin),
                        ("Access-Control-Allow-Methods", _CORS_METHODS),
                        ("Access-Control-Allow-Headers", _CORS_HEADERS)]
        headers += list((extra or {}).items())
        if self.close:
            headers.append(("Connection", "close"))
        await self._send({"type": "http.response.start", "status": status,
                          "headers": [(name.encode(), value.encode())
                                      for name, value in headers]})
        await self._send({"type": "http.response.body", "body": b"" if self.head else body})
