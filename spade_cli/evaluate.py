"""``spade-eval``: evaluate generated images (FID / KID, segmentation mIoU, synthetic mIoU)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from spade_cli.app import (
    UsageError,
    add_precision_option,
    add_weights_option,
    new_parser,
    run,
)
from spade_tf.atomic import write_text
from spade_tf.progress import ProgressLine

PROG = "spade-eval"
EXAMPLES = """examples:
  spade-eval generate --model-dir runs/ade20k --data tfrecords/ade20k_val --out eval/ade20k
  spade-eval fid --real eval/ade20k/real --generated eval/ade20k/generated \\
      --inception inception-2015-12-05.pt
  spade-eval segmentation --generated eval/ade20k/generated --labels eval/ade20k/labels \\
      --segmenter segmenters/ade20k --label-mapping ade20k_to_upernet.json
  spade-eval generate --model-dir demo_output/run --data demo_output/records --out eval/demo
  spade-eval synthetic --generated eval/demo/generated --labels eval/demo/labels
Nothing is downloaded: Inception and segmentation networks are local files
(see docs/evaluation.md)."""
# Seconds between progress lines on stderr (the last one is always printed).
PROGRESS_INTERVAL = 10.0


def _progress(interval: float = PROGRESS_INTERVAL) -> Callable[[str, int, int | None], None]:
    """``progress(stage, done, total)`` printing ``spade-eval: <stage> done/total`` to
    stderr, a line per stage at most every ``interval`` seconds (never redrawn in place: the
    lines are a log), its last always."""
    lines: dict[str, ProgressLine] = {}

    def report(stage: str, done: int, total: int | None) -> None:
        if stage not in lines:
            lines[stage] = ProgressLine(f"{PROG}: {stage}", total, interval,
                                        write=lambda line: print(line, file=sys.stderr))
        lines[stage].update(done, total)

    return report


def _add_image_and_label_folders(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generated", required=True, help="folder of generated images")
    parser.add_argument("--labels", required=True,
                        help="folder of label maps (same file names)")


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="also write the results to this JSON file")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, "Evaluate generated images (FID / KID, segmentation mIoU, "
                        "synthetic mIoU).", EXAMPLES)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fid = commands.add_parser("fid", help="FID and KID between real and generated image folders")
    fid.add_argument("--real", required=True, help="folder of real images")
    fid.add_argument("--generated", required=True, help="folder of generated images")
    fid.add_argument("--inception", required=True,
                     help="Inception file: Keras InceptionV3 weights (.h5, .keras) or the "
                          "TorchScript FID Inception (.pt)")
    fid.add_argument("--batch-size", type=int, default=50, help="images per batch (50)")
    fid.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (100)")
    fid.add_argument("--kid-subset-size", type=int, default=1000,
                     help="KID subset size, clipped to the smaller set (1000)")
    fid.add_argument("--seed", type=int, default=0, help="seed of the KID subsets (0)")
    _add_json(fid)

    seg = commands.add_parser("segmentation",
                              help="mIoU and pixel accuracy of a segmenter on generated images")
    _add_image_and_label_folders(seg)
    seg.add_argument("--segmenter", required=True, help="segmentation SavedModel folder")
    seg.add_argument("--segmenter-input-range", default="0-255",
                     choices=("0-255", "0-1", "minus1-1"),
                     help="pixel range a float-input segmenter expects: [0, 255] (default), "
                          "[0, 1] or [-1, 1]")
    seg.add_argument("--ignore-id", type=int, default=255,
                     help="label id left out of the scores (255)")
    seg.add_argument("--num-classes", type=int,
                     help="class count; ids outside it are errors (default: grow to the ids seen)")
    seg.add_argument("--label-mapping", metavar="JSON",
                     help='rewrite label ids into the segmenter\'s: {"label id": class id}; '
                          "unlisted ids are ignored")
    seg.add_argument("--batch-size", type=int, default=8, help="images per batch (8)")
    _add_json(seg)

    syn = commands.add_parser("synthetic",
                              help="synthetic mIoU: classes read back from colours (no network)")
    _add_image_and_label_folders(syn)
    _add_json(syn)

    gen = commands.add_parser("generate",
                              help="run a trained generator over TFRecords -> PNG folders")
    gen.add_argument("--model-dir", required=True,
                     help="model folder (spade-train or spade-convert-torch output)")
    gen.add_argument("--data", required=True, help="TFRecords folder (spade-tfrecords output)")
    gen.add_argument("--out", required=True,
                     help="new folder for generated/, real/ and labels/")
    gen.add_argument("--limit", type=int, help="at most this many images (default: all)")
    gen.add_argument("--seed", type=int, default=0, help="seed of VAE latents (0)")
    gen.add_argument("--latent", default="encode", choices=("encode", "random"),
                     help="VAE models: latent from the real photo (encode, as the reference's "
                          "test) or from N(0, I)")
    gen.add_argument("--batch-size", type=int, default=8, help="images per batch (8)")
    add_precision_option(gen)
    add_weights_option(gen)
    gen.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    return parser


def _write_json(path: str | None, command: str, values: dict) -> None:
    if path:
        target = Path(path)
        try:
            write_text(target, json.dumps({"command": command, **values}, indent=2) + "\n")
        except OSError as error:  # the scores are printed already: say only what failed
            raise UsageError(f"cannot write --json {target}: {error.strerror or error}."
                             ) from None


def _kid_line(result) -> str:
    """KID as mean ± std over the subsets; one subset has no spread, so no ± (and why)."""
    size = result.kid_subset_size
    if result.kid_std is not None:
        return (f"KID  {result.kid_mean:.6f} ± {result.kid_std:.6f}  "
                f"({result.kid_num_subsets} subsets of {size})")
    why = ""
    if result.num_real == result.num_generated == size:
        why = (f": both folders hold {size} images, so every subset is all of them and there "
               "is no spread; more images give one")
    return f"KID  {result.kid_mean:.6f}  (1 subset of {size}{why})"


def _run_fid(args, progress) -> None:
    from spade_tf.evaluation.evaluate import evaluate_fid

    # Checked here: the library would only refuse after reading every image.
    if args.kid_subsets < 1:
        raise UsageError(f"--kid-subsets {args.kid_subsets}: expected at least 1 subset.")
    if args.kid_subset_size < 2:
        raise UsageError(f"--kid-subset-size {args.kid_subset_size}: expected at least 2 "
                         "(KID compares pairs of images within a subset).")
    result = evaluate_fid(args.real, args.generated, args.inception, args.batch_size,
                          args.kid_subsets, args.kid_subset_size, args.seed, progress)
    print(f"FID  {result.fid:.4f}")
    print(_kid_line(result))
    print(f"images: {result.num_real} real, {result.num_generated} generated; "
          f"{result.inception_kind} Inception {result.inception} ({result.feature_dim} features)")
    if result.num_real != result.num_generated:
        print("note: FID depends on the image counts; compare runs at equal counts.")
    if min(result.num_real, result.num_generated) <= result.feature_dim:
        print(f"note: fewer images than features ({result.feature_dim}): the covariances are "
              "rank-deficient and FID is strongly biased upwards.")
    _write_json(args.json, "fid", result.to_dict())


def _print_scores(result) -> None:
    scores = result.scores
    print(f"mIoU            {scores.mean_iou:.4f}  ({len(scores.class_iou)} classes present)")
    print(f"pixel accuracy  {scores.pixel_accuracy:.4f}  ({result.num_images} images, "
          f"{scores.num_pixels} labelled pixels)")


def _run_segmentation(args, progress) -> None:
    from spade_tf.evaluation.evaluate import evaluate_segmentation
    from spade_tf.evaluation.segmentation import read_label_mapping

    mapping = read_label_mapping(args.label_mapping) if args.label_mapping else None
    result = evaluate_segmentation(args.generated, args.labels, args.segmenter,
                                   ignore_id=args.ignore_id, num_classes=args.num_classes,
                                   label_mapping=mapping, input_range=args.segmenter_input_range,
                                   batch_size=args.batch_size, progress=progress)
    _print_scores(result)
    _write_json(args.json, "segmentation", result.to_dict())


def _run_synthetic(args, progress) -> None:
    from spade_tf.evaluation.evaluate import evaluate_synthetic

    result = evaluate_synthetic(args.generated, args.labels, progress=progress)
    _print_scores(result)
    _write_json(args.json, "synthetic", result.to_dict())


def _run_generate(args, progress) -> None:
    from spade_tf.evaluation.generate import generate_images

    summary = generate_images(args.model_dir, args.data, args.out, limit=args.limit,
                              seed=args.seed, batch_size=args.batch_size, latent=args.latent,
                              overwrite=args.overwrite, precision=args.precision,
                              weights=args.weights,
                              progress=lambda done, total: progress("generated", done, total))
    height, width = summary.image_size
    print(f"wrote {summary.num_images} images ({width}x{height}) to {summary.out_dir}/"
          "{generated,real,labels}")


RUNNERS = {"fid": _run_fid, "segmentation": _run_segmentation, "synthetic": _run_synthetic,
           "generate": _run_generate}


def evaluate_command(args: argparse.Namespace) -> None:
    RUNNERS[args.command](args, _progress())


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), evaluate_command, argv,
               uses_tensorflow=lambda args: args.command != "synthetic")


if __name__ == "__main__":
    raise SystemExit(main())
