"""``spade-convert-torch``: the reference's PyTorch checkpoints -> a spade-tf model folder."""

from __future__ import annotations

import argparse
import os
import sys

from spade_tf.config import ConfigError, add_override_argument, load_config

EXAMPLE = """example:
  spade-convert-torch --config configs/ade20k.yaml \\
      --generator checkpoints/ade20k_pretrained/latest_net_G.pth --out models/ade20k"""


def _print_progress(role: str, done: int, total: int) -> None:
    # One line per tenth of the tensors keeps large checkpoints visibly moving.
    if done == total or done % max(1, total // 10) == 0:
        print(f"  {role}: {done}/{total} tensors", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spade-convert-torch", description=__doc__.split(":", 1)[1].strip(),
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from spade_tf.convert import ConversionError, convert_reference_checkpoints
    from spade_tf.model_dir import ModelDirError

    try:
        config = load_config(args.config, args.set)
        print(f"converting into {args.out} ...", file=sys.stderr, flush=True)
        out = convert_reference_checkpoints(
            config, args.out, generator=args.generator, encoder=args.encoder,
            discriminator=args.discriminator, config_name=args.config,
            overwrite=args.overwrite, progress=_print_progress,
        )
    except (ConfigError, ConversionError, ModelDirError) as error:
        print(f"spade-convert-torch: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out} (config.yaml + .keras networks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
