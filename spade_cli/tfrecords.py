"""``spade-tfrecords``: dataset folders -> checked TFRecord shards, and tools around them.

Subcommands:
  convert    list a dataset's pairs, check every one, write shards + manifest.json
  inspect    counts, image sizes, class histogram and a schema check of every record
  synthetic  write the procedural scene dataset (images/, labels/, instances/)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

from spade_cli.app import UsageError, new_parser, run
from spade_tf.errors import Interrupted
from tfrecords_tools import datasets

EXAMPLES = """examples:
  spade-tfrecords convert --dataset cityscapes --root data/cityscapes --split train \\
      --out tfrecords/cityscapes_train
  spade-tfrecords convert --dataset folders --images my/photos --labels my/labels \\
      --num-classes 20 --dontcare-label 255 --out tfrecords/mine
  spade-tfrecords inspect tfrecords/mine
  spade-tfrecords synthetic --out data/synthetic --num 200 --size 128"""


def _positive(what: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= 1 (leave the option out for the default)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number of {what}, got "
                                             f"{text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected at least 1 {what[:-1]}, got {value} "
                                             "(leave the option out for the default)")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("spade-tfrecords", "Dataset folders -> checked TFRecord shards, and "
                        "tools around them.", EXAMPLES)
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert a dataset to TFRecords")
    convert.add_argument("--dataset", required=True, choices=datasets.DATASETS)
    convert.add_argument("--root", help="dataset root (cityscapes, ade20k, coco_stuff)")
    convert.add_argument("--split", default="train", help="train or val (default train)")
    convert.add_argument("--images", help="image folder (folders)")
    convert.add_argument("--labels", help="label map folder (folders)")
    convert.add_argument("--instances", help="instance map folder (folders, optional)")
    convert.add_argument("--num-classes", type=int, help="class count (folders)")
    convert.add_argument("--dontcare-label", type=int,
                         help="id of don't-care pixels, e.g. 255 (folders, optional)")
    convert.add_argument("--no-instances", action="store_true",
                         help="coco_stuff: ignore the instance maps")
    convert.add_argument("--out", required=True, help="folder for the shards")
    convert.add_argument("--num-shards", type=_positive("shards"),
                         help="number of shards (default: about 100 examples each)")
    convert.add_argument("--workers", type=_positive("workers"),
                         help="worker processes (default: one per CPU core)")
    convert.add_argument("--skip-bad", action="store_true",
                         help="leave unusable pairs out (listed in the manifest) instead "
                              "of stopping")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace an earlier conversion in --out (kept until the new "
                              "one is complete)")

    inspect = commands.add_parser("inspect", help="summarize and check a converted dataset")
    inspect.add_argument("folder")

    synthetic = commands.add_parser("synthetic", help="write the procedural scene dataset")
    synthetic.add_argument("--out", required=True)
    synthetic.add_argument("--num", type=int, required=True, help="number of scenes")
    synthetic.add_argument("--size", type=int, default=128, help="side in pixels (default 128)")
    synthetic.add_argument("--seed", type=int, default=0)
    return parser


# Which options each mode reads; any other given option would be silently ignored.
MODE_OPTIONS = {
    "folders": ("--images", "--labels", "--instances", "--num-classes", "--dontcare-label"),
    "cityscapes": ("--root",),
    "ade20k": ("--root",),
    "coco_stuff": ("--root", "--no-instances"),
}
MODE_ONLY = {"--root": "root", "--images": "images", "--labels": "labels",
             "--instances": "instances", "--num-classes": "num_classes",
             "--dontcare-label": "dontcare_label", "--no-instances": "no_instances"}


def _check_mode_options(args: argparse.Namespace) -> None:
    allowed = MODE_OPTIONS[args.dataset]
    unused = [flag for flag, dest in MODE_ONLY.items()
              if flag not in allowed and getattr(args, dest) not in (None, False)]
    if unused:
        takes = ", ".join(allowed)
        raise UsageError(f"--dataset {args.dataset} does not use {', '.join(unused)} (it takes "
                         f"{takes}, --split and --out).")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.split):
        raise UsageError(f"--split {args.split!r}: expected a plain name such as train or val "
                         "(it names the shards).")


def _listing(args: argparse.Namespace) -> datasets.DatasetListing:
    _check_mode_options(args)
    if args.dataset == "folders":
        missing = [flag for flag, value in (("--images", args.images), ("--labels", args.labels),
                                            ("--num-classes", args.num_classes)) if value is None]
        if missing:
            raise datasets.DatasetLayoutError(f"--dataset folders needs {', '.join(missing)}.")
        return datasets.list_folders(args.images, args.labels, args.num_classes,
                                     instances=args.instances,
                                     dontcare_label=args.dontcare_label, split=args.split)
    if args.root is None:
        raise datasets.DatasetLayoutError(
            f"--dataset {args.dataset} needs --root, the folder that holds the dataset.")
    if args.dataset == "cityscapes":
        return datasets.list_cityscapes(args.root, args.split)
    if args.dataset == "ade20k":
        return datasets.list_ade20k(args.root, args.split)
    return datasets.list_coco_stuff(args.root, args.split, use_instances=not args.no_instances)


def _convert(args: argparse.Namespace) -> int:
    from tfrecords_tools.convert import ConversionFailed, ConversionInterrupted, convert_listing

    try:
        convert_listing(_listing(args), args.out, num_shards=args.num_shards or 0,
                        workers=args.workers or 0, skip_bad=args.skip_bad,
                        overwrite=args.overwrite)
    except ConversionInterrupted as stop:
        raise Interrupted(str(stop)) from None
    except ConversionFailed as error:
        if not error.details:
            raise
        # The bad pairs one per line, then the error itself as the last line.
        print("\n".join(error.details), file=sys.stderr)
        raise ConversionFailed(error.short) from None
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    from tfrecords_tools import synthetic

    if args.num < 1:
        raise UsageError(f"--num {args.num}: expected a positive number of scenes.")
    if args.size < 16 or args.size % 8:
        raise UsageError(f"--size {args.size}: expected a multiple of 8, at least 16 "
                         "(e.g. 128).")
    if args.seed < 0:
        raise UsageError(f"--seed {args.seed}: expected 0 or more.")
    synthetic.check_out_dir(args.out, "--out")
    written = 0

    def progress(done: int, total: int) -> None:
        nonlocal written
        written = done
        if done == total or done % max(1, total // 10) == 0:
            print(f"scenes: {done}/{total}", file=sys.stderr, flush=True)

    try:
        path = synthetic.write_dataset(args.out, args.num, size=args.size, seed=args.seed,
                                       progress=progress)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted after {written} of {args.num} scenes; run the same "
                          f"command to write {args.out} again") from None
    print(f"wrote {args.num} scenes to {path} ({synthetic.NUM_CLASSES} classes; convert with "
          f"--dataset folders --images {path}/images --labels {path}/labels "
          f"--instances {path}/instances --num-classes {synthetic.NUM_CLASSES})")
    return 0


def tfrecords_command(args: argparse.Namespace) -> int | None:
    if args.command == "convert":
        return _convert(args)
    if args.command == "inspect":
        from tfrecords_tools.inspect import inspect_dataset

        manifest, report = inspect_dataset(args.folder)
        print(report.format(manifest))
        return 1 if report.problems else 0
    return _synthetic(args)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), tfrecords_command, argv,
               uses_tensorflow=lambda args: args.command != "synthetic")


if __name__ == "__main__":
    raise SystemExit(main())
