"""``spade-convert-torch``: the reference's PyTorch checkpoints -> a spade-tf model folder."""

from __future__ import annotations

import argparse
import sys

from spade_cli.app import new_parser, run
from spade_tf.config import add_override_argument
from spade_tf.errors import Interrupted

EXAMPLE = """example:
  spade-convert-torch --config configs/ade20k.yaml \\
      --generator checkpoints/ade20k_pretrained/latest_net_G.pth --out models/ade20k"""


def _print_progress(role: str, done: int, total: int) -> None:
    # One line per tenth of the tensors keeps large checkpoints visibly moving.
    if done == total or done % max(1, total // 10) == 0:
        print(f"  {role}: {done}/{total} tensors", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("spade-convert-torch",
                        "Convert the reference's PyTorch checkpoints into a spade-tf model "
                        "folder.", EXAMPLE)
    parser.add_argument("--config", required=True,
                        help="YAML giving what weights cannot tell: classes, sizes, mode")
    parser.add_argument("--generator", required=True, help="the reference's *_net_G.pth")
    parser.add_argument("--encoder", help="*_net_E.pth of a VAE model (optional)")
    parser.add_argument("--discriminator", help="*_net_D.pth, to resume training (optional)")
    parser.add_argument("--out", required=True, help="model folder to create")
    add_override_argument(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists (atomically)")
    return parser


def convert_command(args: argparse.Namespace) -> None:
    from spade_tf.config import load_config
    from spade_tf.convert import convert_reference_checkpoints

    config = load_config(args.config, args.set)
    print(f"converting into {args.out} ...", file=sys.stderr, flush=True)
    try:
        out = convert_reference_checkpoints(
            config, args.out, generator=args.generator, encoder=args.encoder,
            discriminator=args.discriminator, config_name=args.config,
            overwrite=args.overwrite, progress=_print_progress,
        )
    except KeyboardInterrupt:
        # The model folder is written in a staging folder and renamed at the end.
        raise Interrupted(f"interrupted; {args.out} was not written or changed: run the "
                          "same command again") from None
    print(f"wrote {out} (config.yaml + .keras networks)")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), convert_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
