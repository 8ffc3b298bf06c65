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
    parser.add_argument("--model-base-path",
                        help="folder of integer version folders (<export_base>/<model_name>)")
    parser.add_argument("--model-name", default="spade", help="served model name (spade)")
    parser.add_argument("--model-config-file", metavar="FILE",
                        help="TF Serving's models.config instead of --model-base-path: several "
                             "models, version policies (latest/all/specific), version labels "
                             "(see serving/deploy/models.config)")
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
    parser.add_argument("--workers", type=int, default=8,
                        help="predictions run at once, per API (8)")
    parser.add_argument("--enable-batching", action="store_true",
                        help="merge concurrent requests for the same signature into batches, "
                             "as TF Serving's --enable_batching")
    parser.add_argument("--batching-parameters-file", metavar="FILE",
                        help="TF Serving's batching parameters (text format, e.g. "
                             "serving/deploy/batching_parameters.txt; needs --enable-batching; "
                             "default: TF Serving's defaults)")
    parser.add_argument("--monitoring-config-file", metavar="FILE",
                        help="TF Serving's monitoring config: prometheus_config { enable: true, "
                             "path: \"/monitoring/prometheus/metrics\" } serves Prometheus "
                             "metrics on the REST port (needs --rest-port)")
    parser.add_argument("--rest-body-timeout", type=float,
                        default=sig.REST_BODY_TIMEOUT_SECONDS,
                        help="seconds a REST request's body may take to arrive, then HTTP 408 "
                             f"({sig.REST_BODY_TIMEOUT_SECONDS:g}, TF Serving's "
                             "--rest_api_timeout_in_ms)")
    parser.add_argument("--rest-max-queued", type=int, default=sig.REST_MAX_QUEUED,
                        help="REST predictions waiting for a worker; beyond, HTTP 503 "
                             f"UNAVAILABLE ({sig.REST_MAX_QUEUED})")
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
    if (args.model_base_path is None) == (args.model_config_file is None):
        parser.error("give --model-base-path (one model) or --model-config-file (TF Serving's "
                     "models.config), not both" if args.model_base_path
                     else "required: --model-base-path (or --model-config-file)")
    if args.batching_parameters_file and not args.enable_batching:
        parser.error("--batching-parameters-file needs --enable-batching (as in TF Serving)")
    if args.monitoring_config_file and not args.rest_port:
        parser.error("--monitoring-config-file needs --rest-port: the metrics are served there")
    if not args.rest_body_timeout > 0:
        parser.error(f"--rest-body-timeout {args.rest_body_timeout:g}: expected seconds > 0")
    if args.rest_max_queued < 0:
        parser.error(f"--rest-max-queued {args.rest_max_queued}: expected 0 or more")
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
                # --rest-port 0 turns REST off (as in TF Serving), so 0 is no advice there.
                other = "0 picks a free one" if option == "--port" else f"e.g. {port + 1}"
                raise UsageError(f"port {port} on {host} is in use (another spade-serve or TF "
                                 f"Serving?): stop that server or choose another {option} "
                                 f"({other}).") from None
            if error.errno == errno.EACCES:
                raise UsageError(f"not allowed to listen on {where} (ports below 1024 need "
                                 f"privileges): choose another {option}, e.g. "
                                 f"{sig.DEFAULT_GRPC_PORT}.") from None
            if error.errno == errno.EADDRNOTAVAIL:
                raise UsageError(f"--host {host} is not an address of this machine: use "
                                 "127.0.0.1 (this machine only) or 0.0.0.0 (all).") from None
            raise UsageError(f"cannot listen on {where}: {error.strerror or error}.") from None


def _configs(args: argparse.Namespace) -> dict:
    """TF Serving's config files, read and checked before TensorFlow's slow start."""
    from serving.base_path import check_model_base_path
    from serving.batching import BatchingParameters, load_batching_parameters
    from serving.metrics import load_monitoring_config
    from serving.model_config import load_model_config

    configs: dict = {}
    if args.model_config_file:
        configs["model_config"] = load_model_config(args.model_config_file)
    else:
        check_model_base_path(args.model_base_path, args.model_name)
    if args.enable_batching:  # without a file, TF Serving's defaults
        configs["batching"] = load_batching_parameters(args.batching_parameters_file) \
            if args.batching_parameters_file else BatchingParameters()
    if args.monitoring_config_file:
        configs["monitoring"] = load_monitoring_config(args.monitoring_config_file)
    return configs


def serve_command(args: argparse.Namespace) -> None:
    # The mistakes a user can make in the arguments fail before TensorFlow's slow start.
    configs = _configs(args)
    check_port_free(args.host, args.port)
    if args.rest_port:
        check_port_free(args.host, args.rest_port, "--rest-port")
    quiet_tensorflow()
    logging.basicConfig(level=logging.INFO, format="spade-serve: %(message)s")
    import sys

    from serving.server import SpadeServer

    server = SpadeServer(args.model_base_path, args.model_name, port=args.port, host=args.host,
                         poll_seconds=args.poll_seconds, workers=args.workers,
                         rest_port=args.rest_port or None, cors_origin=args.cors_origin,
                         rest_max_queued=args.rest_max_queued,
                         rest_body_timeout=args.rest_body_timeout, **configs)
    stop_requested = threading.Event()
    # The handlers only set a flag: the main thread does the shutdown.
    previous = {signum: signal.signal(signum, lambda signum, frame: stop_requested.set())
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        print(f"spade-serve: listening on {server.address}", flush=True)
        if server.rest is not None:
            rest = f"http://{server.rest.address}"
            name = server.model_name
            print(f"spade-serve: REST API on {rest}/v1/models/{name}; "
                  f"painter at {rest}/?model={name}", flush=True)
            if server.metrics is not None:
                print(f"spade-serve: Prometheus metrics at {rest}"
                      f"{configs['monitoring'].prometheus_path}", flush=True)
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
