"""``spade-serve`` (the embedded model server) and ``spade-synthesize`` (one image from it).

Also runnable as ``python -m serving.cli serve ...`` / ``python -m serving.cli synthesize ...``.
Both exit with 0 on success and 2 on any error, after one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

SERVE_EXAMPLE = """example:
  spade-serve --model-base-path exports/spade --model-name spade --port 8500
serves the newest integer version under exports/spade over TF Serving's gRPC API (and the
gRPC health service) on 127.0.0.1:8500, picking up versions exported later; SIGTERM or
Ctrl-C stops it after in-flight requests finish."""

SYNTHESIZE_EXAMPLE = """example:
  spade-synthesize --server 127.0.0.1:8500 --label label.png --instance inst.png \\
      --seed 3 --out out.png
label and instance maps are single-channel PNGs of ids (8- or 16-bit, or palette)."""

# Pillow modes that hold one integer per pixel (palette images hold the index).
ID_MAP_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N")


def build_serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spade-serve", description="Serve an exported spade-tf model over gRPC.",
        epilog=SERVE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", required=True,
                        help="folder of integer version folders (<export_base>/<model_name>)")
    parser.add_argument("--model-name", default="spade", help="served model name (spade)")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (8500; 0: any free)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--poll-seconds", type=float, default=2.0,
                        help="how often to look for new versions (2; 0: never)")
    parser.add_argument("--workers", type=int, default=8, help="requests served at once (8)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds in-flight requests get on shutdown (10)")
    return parser


def serve_main(argv: list[str] | None = None) -> int:
    parser = build_serve_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: expected 0..65535")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: expected at least 1")
    if args.poll_seconds < 0 or args.grace < 0:
        parser.error("--poll-seconds and --grace must not be negative")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="spade-serve: %(message)s")
    from serving.server import ServerStartError, SpadeServer

    server = SpadeServer(args.model_base_path, args.model_name, port=args.port, host=args.host,
                         poll_seconds=args.poll_seconds, workers=args.workers)
    stop_requested = threading.Event()
    # The handlers only set a flag: the main thread does the shutdown.
    previous = {signum: signal.signal(signum, lambda signum, frame: stop_requested.set())
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            server.start()
        except ServerStartError as error:
            print(f"spade-serve: error: {error}", file=sys.stderr)
            return 2
        print(f"spade-serve: listening on {server.address}", flush=True)
        while not stop_requested.wait(1.0):
            pass
        print("spade-serve: stopping", file=sys.stderr, flush=True)
        server.stop(args.grace).wait(args.grace + 5.0)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def build_synthesize_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spade-synthesize", description="Synthesize one image with a served model.",
        epilog=SYNTHESIZE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="HOST:PORT of spade-serve or TF Serving")
    parser.add_argument("--label", required=True, help="label map PNG (class ids)")
    parser.add_argument("--instance", help="instance map PNG (models with instance edges)")
    style = parser.add_mutually_exclusive_group()
    style.add_argument("--style", help="photo whose style to copy (VAE models)")
    style.add_argument("--seed", type=int, help="style seed, for reproducible images (VAE)")
    parser.add_argument("--model-name", default="spade", help="served model name (spade)")
    parser.add_argument("--version", type=int, help="model version (default: the served one)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call (60)")
    parser.add_argument("--out", required=True, help="output image (PNG)")
    return parser


def read_id_map(path: str | os.PathLike):
    """A single-channel PNG (8- or 16-bit grayscale, or palette) -> integer array [H, W]."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ID_MAP_MODES:
            raise ValueError(f"{path} is a {image.mode} image: expected a single-channel map "
                             "of ids (8- or 16-bit grayscale, or palette)")
        array = np.array(image)
    return array.astype(np.int32) if array.dtype == np.bool_ else array


def read_photo(path: str | os.PathLike):
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def synthesize_main(argv: list[str] | None = None) -> int:
    args = build_synthesize_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from PIL import Image

    from serving.client import ServingError, SpadeClient

    try:
        labels = read_id_map(args.label)
        instances = read_id_map(args.instance) if args.instance else None
        style = read_photo(args.style) if args.style else None
        with SpadeClient(args.server, args.model_name, timeout=args.timeout) as client:
            image = client.synthesize(labels, instances, seed=args.seed, style_image=style,
                                      version=args.version)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out)
    except (OSError, ValueError, ServingError) as error:
        print(f"spade-synthesize: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]})")
    return 0


COMMANDS = {"serve": serve_main, "synthesize": synthesize_main}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m serving.cli {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
