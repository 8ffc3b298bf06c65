"""``spade-serve``: the embedded model server (TF Serving's gRPC API) over exported versions.

Exits with 0 after a clean stop (SIGTERM or Ctrl-C: in-flight requests finish first) and
2 on any error, after one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from spade_cli.app import new_parser, run
from spade_tf import signatures as sig

SERVE_EXAMPLE = """example:
  spade-serve --model-base-path exports/spade --model-name spade --port 8500
serves the newest integer version under exports/spade over TF Serving's gRPC API (and the
gRPC health service) on 127.0.0.1:8500, picking up versions exported later; SIGTERM or
Ctrl-C stops it after in-flight requests finish."""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("spade-serve", "Serve an exported spade-tf model over gRPC.",
                        SERVE_EXAMPLE)
    parser.add_argument("--model-base-path", required=True,
                        help="folder of integer version folders (<export_base>/<model_name>)")
    parser.add_argument("--model-name", default="spade", help="served model name (spade)")
    parser.add_argument("--port", type=int, default=sig.DEFAULT_GRPC_PORT,
                        help=f"gRPC port ({sig.DEFAULT_GRPC_PORT}; 0: any free)")
    parser.add_argument("--host", default=sig.DEFAULT_HOST,
                        help=f"interface to listen on ({sig.DEFAULT_HOST}; 0.0.0.0 for all)")
    parser.add_argument("--poll-seconds", type=float, default=2.0,
                        help="how often to look for new versions (2; 0: never)")
    parser.add_argument("--workers", type=int, default=8, help="requests served at once (8)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds in-flight requests get on shutdown (10)")
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: expected 0..65535")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: expected at least 1")
    if args.poll_seconds < 0 or args.grace < 0:
        parser.error("--poll-seconds and --grace must not be negative")


def serve_command(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="spade-serve: %(message)s")
    import sys

    from serving.server import SpadeServer

    server = SpadeServer(args.model_base_path, args.model_name, port=args.port, host=args.host,
                         poll_seconds=args.poll_seconds, workers=args.workers)
    stop_requested = threading.Event()
    # The handlers only set a flag: the main thread does the shutdown.
    previous = {signum: signal.signal(signum, lambda signum, frame: stop_requested.set())
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        print(f"spade-serve: listening on {server.address}", flush=True)
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

    return run(parser, command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
