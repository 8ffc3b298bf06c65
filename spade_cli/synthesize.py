"""``spade-synthesize``: one image from a label map with a served model (gRPC)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from spade_cli.app import UsageError, new_parser, run

SYNTHESIZE_EXAMPLE = """example:
  spade-synthesize --server 127.0.0.1:8500 --label label.png --instance inst.png \\
      --seed 3 --out out.png
label and instance maps are single-channel PNGs of ids (8- or 16-bit, or palette)."""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("spade-synthesize", "Synthesize one image with a served model.",
                        SYNTHESIZE_EXAMPLE)
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


def read_photo(path: str | os.PathLike):
    """A photo as RGB uint8 [H, W, 3]."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as error:  # Pillow's UnidentifiedImageError is an OSError
        raise UsageError(f"the style photo {path} cannot be read: {error}") from None


def synthesize_command(args: argparse.Namespace) -> None:
    from PIL import Image

    from serving.client import SpadeClient
    from spade_tf.label_maps import read_id_map

    labels = read_id_map(args.label)
    instances = read_id_map(args.instance, "instance map") if args.instance else None
    style = read_photo(args.style) if args.style else None
    with SpadeClient(args.server, args.model_name, timeout=args.timeout) as client:
        image = client.synthesize(labels, instances, seed=args.seed, style_image=style,
                                  version=args.version)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out)
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]})")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), synthesize_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
