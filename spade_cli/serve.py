"""``spade-serve``: the embedded model server (TF Serving's gRPC and REST APIs, and the
painter page) over exported versions.

Exits with 0 after a clean stop (SIGTERM or Ctrl-C: in-flight requests finish first) and
2 on any error, after one line on stderr.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import threading

from spade_cli.app import UsageError, new_parser, run
from spade_cli.quiet import quiet_tensorflow
from spade_tf import signatures as sig

SERVE_EXAMPLE = """examples:
  spade-serve --model-base-path exports/spade --model-name spade --port 8500
  spade-serve --model-base-path exports/spade --rest-port 8501
serves the newest integer version under exports/spade over TF Serving's gRPC API (and the
gRPC health service) on 127.0.0.1:8500, and with --rest-port its REST API with the
painter page at http://127.0.0.1:8501/; picks up versions exported later; SIGTERM or
Ctrl-C stops it after in-flight requests finish."""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("spade-serve", "Serve an exported spade-tf model over gRPC and REST.",
                        SERVE_EXAMPLE)
    parser.add_argument("--model-base-path", required=True,
                        help="folder of integer version folders (<export_base>/<model_name>)")
    parser.add_argument("--model-name", default="spade", help="served model name (spade)")
    parser.add_argument("--port", type=int, default=sig.DEFAULT_GRPC_PORT,
                        help=f"gRPC port ({sig.DEFAULT_GRPC_PORT}; 0: any free)")
    parser.add_argument("--rest-port", type=int, default=0,
                        help=f"TF Serving's REST API and the painter page on this port (0: off, "
                             f"as in TF Serving; its Docker image uses {sig.DEFAULT_REST_PORT})")
    parser.add_argument("--cors-origin",
                        help="a web origin allowed to call the REST API from its pages "
                             "(default: none; the painter is served from the same origin)")
    parser.add_argument("--host", default=sig.DEFAULT_HOST,
                        help=f"interface to listen on ({sig.DEFAULT_HOST}; 0.0.0.0 for all)")
    parser.add_argument("--poll-seconds", type=float, default=2.0,
                        help="how often to look for new versions (2; 0: never)")
    parser.add_argument("--workers", type=int, default=8, help="requests served at once (8)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds in-flight requests get on shutdown (10)")
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for option, port in (("--port", args.port), ("--rest-port", args.rest_port)):
        if not 0 <= port <= 65535:
            parser.error(f"{option} {port}: expected 0..65535")
    if args.rest_port and args.rest_port == args.port:
        parser.error(f"--port and --rest-port are both {args.port}: give them different ports")
    if args.cors_origin and not args.rest_port:
        parser.error("--cors-origin needs --rest-port (it is about the REST API)")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: expected at least 1")
    if args.poll_seconds < 0 or args.grace < 0:
        parser.error("--poll-seconds and --grace must not be negative")


def check_port_free(host: str, port: int, option: str = "--port") -> None:
    """Bind ``host:port`` for a moment, so a taken port fails at once rather than after
    TensorFlow's start-up (the server still reports a bind that fails later)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise UsageError(f"--host {host}: not a known host name or address ({error}); use an "
                         "address of this machine such as 127.0.0.1 or 0.0.0.0.") from None
    with socket.socket(family, kind, proto) as probe:
        # As gRPC does: a port left in TIME_WAIT by a server that just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            where = f"{host}:{port}"
            if error.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is in use (another spade-serve or TF "
                                 f"Serving?): stop that server or choose another {option} (0 "
                                 "picks a free one).") from None
            if error.errno == errno.EACCES:
                raise UsageError(f"not allowed to listen on {where} (ports below 1024 need "
                                 f"privileges): choose another {option}, e.g. "
                                 f"{sig.DEFAULT_GRPC_PORT}.") from None
            if error.errno == errno.EADDRNOTAVAIL:
                raise UsageError(f"--host {host} is not an address of this machine: use "
                                 "127.0.0.1 (this machine only) or 0.0.0.0 (all).") from None
            raise UsageError(f"cannot listen on {where}: {error.strerror or error}.") from None


def serve_command(args: argparse.Namespace) -> None:
    from serving.layout import check_model_base_path

    # The mistakes a user can make in the arguments fail before TensorFlow's slow start.
    check_model_base_path(args.model_base_path, args.model_name)
    check_port_free(args.host, args.port)
    if args.rest_port:
        check_port_free(args.host, args.rest_port, "--rest-port")
    quiet_tensorflow()
    logging.basicConfig(level=logging.INFO, format="spade-serve: %(message)s")
    import sys

    from serving.server import SpadeServer

    server = SpadeServer(args.model_base_path, args.model_name, port=args.port, host=args.host,
                         poll_seconds=args.poll_seconds, workers=args.workers,
                         rest_port=args.rest_port or None, cors_origin=args.cors_origin)
    stop_requested = threading.Event()
    # The handlers only set a flag: the main thread does the shutdown.
    previous = {signum: signal.signal(signum, lambda signum, frame: stop_requested.set())
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        print(f"spade-serve: listening on {server.address}", flush=True)
        if server.rest is not None:
            rest = f"http://{server.rest.address}"
            print(f"spade-serve: REST API on {rest}/v1/models/{args.model_name}; "
                  f"painter at {rest}/?model={args.model_name}", flush=True)
        while not stop_requested.wait(1.0):
            pass
        print("spade-serve: stopping", file=sys.stderr, flush=True)
        server.stop(args.grace).wait(args.grace + 5.0)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> None:
        _check(parser, args)
        serve_command(args)

    # TensorFlow is imported by the command, after the checks that need none.
    return run(parser, command, argv, uses_tensorflow=lambda args: False)


if __name__ == "__main__":
    raise SystemExit(main())
