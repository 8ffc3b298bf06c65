"""Input pipeline throughput: examples/s of the full pipeline next to decoding alone.

Writes a synthetic dataset at 256x256 (or --size), converts it, then times
1) decode only: read + parse + decode photo and maps, and
2) the training pipeline: decode + resize to load_size (bicubic / nearest) + random crop
   + flip + batch, as ``spade_tf.data.make_input_fn`` builds it.

    python benchmarks/input_pipeline.py [--num 128] [--size 256] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tensorflow as tf  # noqa: E402

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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spade-bench-"))
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
    training = load_dataset(work / "records", model, data, args.batch, repeat=False)
    decode_rate = _rate(decode, 1, args.epochs)
    pipeline_rate = _rate(training, args.batch, args.epochs)
    print(f"machine: {os.cpu_count()} CPU cores; {args.num} synthetic PNG examples "
          f"{args.size}x{args.size}, 8 shards")
    print(f"decode only:                      {decode_rate:8.1f} examples/s")
    print(f"training pipeline (resize {data.load_size}, crop {args.size}, flip, batch "
          f"{args.batch}): {pipeline_rate:8.1f} examples/s")


if __name__ == "__main__":
    main()
