"""Input pipeline throughput: examples/s of the full pipeline next to decoding alone.

Writes a synthetic dataset at 256x256 (or --size), converts it, then times
1) decode only: read + parse + decode photo and maps, and
2) the training pipeline: decode + resize to load_size (bicubic / nearest) + random crop
   + flip + batch, as ``spade_tf.data.make_input_fn`` builds it.

    python benchmarks/input_pipeline.py [--num 128] [--size 256] [--epochs 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tensorflow as tf  # noqa: E402

from benchmarks.common import (  # noqa: E402
    add_json_argument,
    machine,
    machine_line,
    progress,
    run_script,
    write_json,
)
from spade_tf.config import DataConfig, ModelConfig  # noqa: E402
from spade_tf.data import load_dataset, parse_example, read_manifest  # noqa: E402
from tfrecords_tools import synthetic  # noqa: E402
from tfrecords_tools.convert import convert_listing  # noqa: E402
from tfrecords_tools.datasets import list_folders  # noqa: E402


def _rate(dataset, examples_per_element: int, epochs: int) -> float:
    for _ in dataset.take(2):  # warm-up: graph tracing, thread pools
        pass
    start, count = time.perf_counter(), 0
    for _ in range(epochs):
        for _ in dataset:
            count += examples_per_element
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=128)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    add_json_argument(parser)
    args = parser.parse_args()
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="spade-bench-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    progress(f"writing {args.num} synthetic examples and converting them to TFRecords")
    scenes = synthetic.write_dataset(work / "scenes", args.num, size=args.size)
    listing = list_folders(scenes / "images", scenes / "labels", synthetic.NUM_CLASSES,
                           instances=scenes / "instances")
    convert_listing(listing, work / "records", num_shards=8, report=lambda message: None)

    files = [str(p) for p in read_manifest(work / "records").shard_paths(work / "records")]
    decode = tf.data.TFRecordDataset(files, num_parallel_reads=4).map(
        parse_example, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    model = ModelConfig(num_classes=synthetic.NUM_CLASSES, use_instance_edges=True,
                        crop_size=args.size)
    data = DataConfig(preprocess="resize_and_crop", load_size=round(args.size * 286 / 256),
                      flip=True)
    training = load_dataset(work / "records", model, data, args.batch, num_epochs=1)
    progress("timing decode only")
    decode_rate = _rate(decode, 1, args.epochs)
    progress("timing the training pipeline")
    pipeline_rate = _rate(training, args.batch, args.epochs)
    info["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(machine_line(info))
    print(f"data: {args.num} synthetic PNG examples {args.size}x{args.size}, 8 shards, "
          f"{args.epochs} epochs timed after 2 warm-up elements")
    print(f"decode only:                      {decode_rate:8.1f} examples/s")
    print(f"training pipeline (resize {data.load_size}, crop {args.size}, flip, batch "
          f"{args.batch}): {pipeline_rate:8.1f} examples/s")
    write_json(args.json, {
        "benchmark": "input_pipeline", "machine": info, "num": args.num, "size": args.size,
        "epochs": args.epochs, "batch": args.batch, "load_size": data.load_size,
        "decode_examples_per_s": decode_rate, "pipeline_examples_per_s": pipeline_rate})


if __name__ == "__main__":
    run_script(main)
