"""The REST port: :class:`RestServer` runs :class:`serving.rest.app.RestApp` on uvicorn.

uvicorn (asyncio, h11) is the transport: one event loop on a background thread holds
every connection, so idle keep-alive connections and slow uploads cost no thread; the
listen backlog is ``BACKLOG`` (bursts queue in the kernel instead of being reset).

    rest = RestServer(manager, port=8501, static_dir=Path("painter"))
    rest.start()
    ...
    rest.stop()
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn

from serving.rest.app import RestApp, RestLimits
from serving.rest.protocol import TfServingH11Protocol
from serving.rest.routes import RestApi
from spade_tf import signatures as sig
from spade_tf.errors import SpadeError

log = logging.getLogger(__name__)

# Large enough for a batch of 1024x1024 label (and instance) maps written as JSON ints.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_WORKERS = 8
# Connections waiting to be accepted (the kernel caps it at net.core.somaxconn).
BACKLOG = 4096
# A keep-alive connection idle for this long between requests is closed.
IDLE_TIMEOUT_SECONDS = 60.0


class RestServerError(SpadeError, RuntimeError):
    """The REST server cannot start (address taken, bad static folder, started twice)."""


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class RestServer:
    """TF Serving's REST API (and optionally a folder of static files) on one port.

    Args:
        manager: the models to answer from (``SpadeServer.registry``, or one
            :class:`~serving.model_manager.ModelManager`).
        host: the interface; loopback unless another one is asked for.
        port: the port; 0 picks a free one (``start`` returns it).
        max_body_bytes: the largest request body read (gzip bodies: uncompressed);
            larger ones are answered 413 from their Content-Length, unread.
        static_dir: a folder served under ``/`` (``index.html`` at ``/``), or None.
        cors_origin: None (default): no CORS headers, for a page served from this
            same server, and no other web page may call the API from a browser. ``"*"``
            (or one origin) sends TF Serving's CORS headers on every answer and answers
            preflight OPTIONS requests.
        workers: predictions run at once (others wait their turn).
        max_queued: predictions waiting for a worker; beyond, HTTP 503 (UNAVAILABLE).
        body_timeout: seconds a request's body may take to arrive (then HTTP 408).
        metrics_path, metrics: a path answered with ``metrics()`` (body, content type).
    """

    def __init__(self, manager, host: str = sig.DEFAULT_HOST,
                 port: int = sig.DEFAULT_REST_PORT,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 static_dir: str | Path | None = None, cors_origin: str | None = None,
                 workers: int = DEFAULT_WORKERS, max_queued: int = sig.REST_MAX_QUEUED,
                 body_timeout: float = sig.REST_BODY_TIMEOUT_SECONDS,
                 metrics_path: str | None = None,
                 metrics: Callable[[], tuple[bytes, str]] | None = None,
                 api: RestApi | None = None):
        for name, value, least in (("max_body_bytes", max_body_bytes, 1),
                                   ("workers", workers, 1), ("max_queued", max_queued, 0)):
            if value < least:
                raise ValueError(f"{name}={value}: expected at least {least}")
        if not body_timeout > 0:
            raise ValueError(f"body_timeout={body_timeout}: expected a positive number")
        self.manager = manager
        self.host = host
        self.port = port
        self.static_dir = Path(static_dir) if static_dir is not None else None
        self.api = api if api is not None else RestApi(manager)
        names = getattr(manager, "model_names", None)
        self.app = RestApp(
            self.api, RestLimits(max_body_bytes, body_timeout, workers, max_queued),
            static_dir=self.static_dir, cors_origin=cors_origin, metrics_path=metrics_path,
            metrics=metrics,
            model_names=(lambda: list(names)) if names is not None
            else (lambda: [manager.model_name]))
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host = self.host
        return f"[{host}]:{self.port}" if ":" in host and not host.startswith("[") \
            else f"{host}:{self.port}"

    def bind(self) -> int:
        """Take the port (0: a free one) without answering yet; returns it.

        Lets a caller fail on a taken port before loading a model; :meth:`start` binds
        when this was not called. Connections made meanwhile wait in the backlog.
        """
        if self._socket is not None:
            return self.port
        if self.static_dir is not None and not self.static_dir.is_dir():
            raise RestServerError(f"static folder {self.static_dir} is not a folder")
        try:
            self._socket = _listening_socket(self.host.strip("[]"), self.port)
        except OSError as error:
            raise RestServerError(f"cannot listen on {self.address}: {error}") from None
        self.port = self._socket.getsockname()[1]
        return self.port

    def start(self) -> int:
        """Bind (unless :meth:`bind` did) and answer from a background thread; returns
        the port once the server accepts connections."""
        if self._thread is not None:
            raise RestServerError("this REST server was started already")
        self.bind()
        config = uvicorn.Config(
            self.app, http=TfServingH11Protocol, lifespan="off", log_config=None,
            access_log=False, server_header=False, date_header=True, backlog=BACKLOG,
            timeout_keep_alive=IDLE_TIMEOUT_SECONDS, timeout_graceful_shutdown=5,
            ws="none", loop="asyncio")
        # uvicorn logs its start and every refused request line at INFO/WARNING.
        logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name="spade-rest", daemon=True)
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            self._thread.join(0.01)
        if not self._server.started:
            raise RestServerError(f"the REST server on {self.address} did not start")
        # debug: spade-serve prints the addresses itself, once.
        log.debug("REST API on http://%s/v1/models/%s", self.address,
                 "/".join(self.app.model_names()[:1]) or "NAME")
        return self.port

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop accepting requests and close the port; True once the serving thread ended
        (within ``timeout`` seconds). Requests in progress get that long to finish."""
        server, thread, sock = self._server, self._thread, self._socket
        if thread is None:
            if sock is not None:  # bound, never started: release the port
                sock.close()
                self._socket = None
            return True
        server.config.timeout_graceful_shutdown = max(timeout - 0.5, 0.1)
        server.should_exit = True
        thread.join(timeout)
        self.app.close()
        return not thread.is_alive()

    def __enter__(self) -> RestServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
