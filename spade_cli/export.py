"""``spade-export``: a trained model folder -> a TF Serving SavedModel version."""

from __future__ import annotations

import argparse

from spade_cli.app import (
    UsageError,
    add_precision_option,
    add_weights_option,
    new_parser,
    run,
)
from spade_tf.layout import TFLITE_QUANTIZATIONS

EXAMPLE = """examples:
  spade-export --model-dir runs/ade20k --export-base exports/ --model-name spade
writes exports/spade/<next version>/ (SavedModel + warm-up requests); point TF Serving
or spade-serve at exports/spade.
  spade-export --model-dir runs/ade20k --export-base exports/ --format tflite --quantization float16
writes exports/spade.float16.tflite (TensorFlow Lite, builtin operators only, batch 1)."""
# SavedModel-only options, refused with --format tflite (name, attribute).
SAVED_MODEL_OPTIONS = (("--version", "version"), ("--max-batch-size", "max_batch_size"),
                       ("--max-pixels", "max_pixels"), ("--precision", "precision"),
                       ("--no-warmup", "no_warmup"))


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("spade-export",
                        "Export a trained model folder as a TF Serving SavedModel version.",
                        EXAMPLE)
    parser.add_argument("--model-dir", required=True,
                        help="model folder (spade-train or spade-convert-torch output)")
    parser.add_argument("--export-base", required=True, help="base folder of exports")
    parser.add_argument("--model-name", default="spade", help="served model name (spade)")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default="saved_model",
                        help="saved_model (TF Serving, spade-serve; the default) or tflite: "
                             "<export-base>/<model-name>[.<quantization>].tflite for phones "
                             "and edge devices (builtin operators only, batch 1)")
    parser.add_argument("--quantization", choices=TFLITE_QUANTIZATIONS,
                        help="with --format tflite: float32 (default), float16 weights (half "
                             "the size) or int8 dynamic-range weights (a quarter)")
    parser.add_argument("--version", type=int, help="version number (default: next free)")
    parser.add_argument("--max-batch-size", type=int,
                        help="largest batch a request may carry (default: export.max_batch_size)")
    parser.add_argument("--max-pixels", type=int,
                        help="largest style image in pixels (default: export.max_pixels)")
    add_precision_option(parser)
    add_weights_option(parser)
    parser.add_argument("--checkpoint", metavar="latest|STEP",
                        help="export a training checkpoint of --model-dir/checkpoints instead "
                             "of the last finished epoch's networks (the networks are built "
                             "from config.yaml: no .keras file is read)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="do not write assets.extra/tf_serving_warmup_requests")
    return parser


def _export_tflite(args: argparse.Namespace) -> None:
    from spade_tf.tflite import export_tflite

    given = [option for option, name in SAVED_MODEL_OPTIONS if getattr(args, name)]
    if given:
        raise UsageError(f"{given[0]} applies to SavedModel exports: leave it out with "
                         "--format tflite (a .tflite file has batch 1 and float32 compute).")
    path = export_tflite(args.model_dir, args.export_base, args.model_name,
                         args.quantization or "float32", checkpoint=args.checkpoint,
                         weights=args.weights)
    print(f"exported {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    print(f"try it with: spade-synthesize --tflite {path} --labels MAP.png --out out.png")


def export_command(args: argparse.Namespace) -> None:
    from spade_tf.export import export_model

    if args.format == "tflite":
        _export_tflite(args)
        return
    if args.quantization is not None:
        raise UsageError("--quantization goes with --format tflite (a SavedModel's weights "
                         "follow --precision).")

    path = export_model(args.model_dir, args.export_base, args.model_name,
                        version=args.version, max_batch_size=args.max_batch_size,
                        max_pixels=args.max_pixels, warmup=not args.no_warmup,
                        precision=args.precision, checkpoint=args.checkpoint,
                        weights=args.weights)
    print(f"exported {path}")
    print(f"serve it with: spade-serve --model-base-path {path.parent} --model-name "
          f"{args.model_name}")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), export_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
