"""``spade-tfrecords``: dataset folders -> checked TFRecord shards, and tools around them.

Subcommands:
  convert    list a dataset's pairs, check every one, write shards + manifest.json
  inspect    counts, image sizes, class histogram and a schema check of every record
  synthetic  write the procedural scene dataset (images/, labels/, instances/)
"""

from __future__ import annotations

import argparse
import sys

from spade_cli.app import new_parser, run
from tfrecords_tools import datasets

EXAMPLES = """examples:
  spade-tfrecords convert --dataset cityscapes --root data/cityscapes --split train \\
      --out tfrecords/cityscapes_train
  spade-tfrecords convert --dataset folders --images my/photos --labels my/labels \\
      --num-classes 20 --dontcare-label 255 --out tfrecords/mine
  spade-tfrecords inspect tfrecords/mine
  spade-tfrecords synthetic --out data/synthetic --num 200 --size 128"""


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
    convert.add_argument("--num-shards", type=int, default=0,
                         help="number of shards (default: about 100 examples each)")
    convert.add_argument("--workers", type=int, default=0,
                         help="worker processes (default: one per CPU core)")
    convert.add_argument("--skip-bad", action="store_true",
                         help="leave unusable pairs out (listed in the manifest) instead "
                              "of stopping")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace an existing conversion in --out")

    inspect = commands.add_parser("inspect", help="summarize and check a converted dataset")
    inspect.add_argument("folder")

    synthetic = commands.add_parser("synthetic", help="write the procedural scene dataset")
    synthetic.add_argument("--out", required=True)
    synthetic.add_argument("--num", type=int, required=True, help="number of scenes")
    synthetic.add_argument("--size", type=int, default=128, help="side in pixels (default 128)")
    synthetic.add_argument("--seed", type=int, default=0)
    return parser


def _listing(args: argparse.Namespace) -> datasets.DatasetListing:
    if args.dataset == "folders":
        missing = [flag for flag, value in (("--images", args.images), ("--labels", args.labels),
                                            ("--num-classes", args.num_classes)) if value is None]
        if missing:
            raise datasets.DatasetLayoutError(f"--dataset folders needs {', '.join(missing)}.")
        return datasets.list_folders(args.images, args.labels, args.num_classes,
                                     instances=args.instances,
                                     dontcare_label=args.dontcare_label, split=args.split)
    if args.root is None:
        raise datasets.DatasetLayoutError(f"--dataset {args.dataset} needs --root.")
    if args.dataset == "cityscapes":
        return datasets.list_cityscapes(args.root, args.split)
    if args.dataset == "ade20k":
        return datasets.list_ade20k(args.root, args.split)
    return datasets.list_coco_stuff(args.root, args.split, use_instances=not args.no_instances)


def tfrecords_command(args: argparse.Namespace) -> int | None:
    if args.command == "convert":
        from tfrecords_tools.convert import convert_listing

        convert_listing(_listing(args), args.out, num_shards=args.num_shards,
                        workers=args.workers, skip_bad=args.skip_bad, overwrite=args.overwrite)
        return 0
    if args.command == "inspect":
        from tfrecords_tools.inspect import inspect_dataset

        manifest, report = inspect_dataset(args.folder)
        print(report.format(manifest))
        return 1 if report.problems else 0
    from tfrecords_tools import synthetic

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            print(f"scenes: {done}/{total}", file=sys.stderr, flush=True)

    path = synthetic.write_dataset(args.out, args.num, size=args.size, seed=args.seed,
                                   progress=progress)
    print(f"wrote {args.num} scenes to {path} ({synthetic.NUM_CLASSES} classes; convert with "
          f"--dataset folders --images {path}/images --labels {path}/labels "
          f"--instances {path}/instances --num-classes {synthetic.NUM_CLASSES})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), tfrecords_command, argv,
               uses_tensorflow=lambda args: args.command != "synthetic")


if __name__ == "__main__":
    raise SystemExit(main())
