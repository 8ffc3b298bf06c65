"""Serving latency: the SavedModel signature in-process next to gRPC round trips.

Exports an ADE20K-shaped model (151 classes, 256x256, random weights) and times
1) in-process: ``tf.saved_model.load(...).signatures["serving_default"]`` on int32 label
   ids, output to numpy, and
2) gRPC: ``SpadeClient.predict`` through the embedded server (``serving.server``) on
   127.0.0.1, which adds TensorProto conversion on both sides, the HTTP/2 transfer and the
   server's request checks,
at batch 1 and batch 8, one request at a time, and prints p50 / p90 / p99 and the serving
overhead ``(grpc - in-process) / in-process``. The paper's widths (64 base filters, 128
SPADE hidden filters) take seconds per image on a small CPU machine, so the defaults are
narrower; pass ``--base-filters 64 --spade-hidden-filters 128`` for the real size.

    python benchmarks/serving_latency.py [--size 256] [--base-filters 16] [--iterations 30]
                                         [--json OUT]
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

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import (  # noqa: E402
    add_json_argument,
    machine,
    machine_line,
    progress,
    write_json,
)
from serving.client import SpadeClient  # noqa: E402
from serving.server import SpadeServer  # noqa: E402
from spade_tf import signatures as sig  # noqa: E402
from spade_tf.config import Config, ModelConfig  # noqa: E402
from spade_tf.export import export_model  # noqa: E402
from spade_tf.model_dir import ModelDir, save_model_dir  # noqa: E402
from spade_tf.models import build_generator  # noqa: E402

PERCENTILES = (50, 90, 99)


def _paired(local, remote, iterations: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Latencies (ms) of both calls, interleaved (order alternating) so drift hits both."""
    for _ in range(warmup):  # first calls pay for graph optimisation and thread pools
        local()
        remote()
    times = {local: [], remote: []}
    for index in range(iterations):
        for call in (local, remote) if index % 2 == 0 else (remote, local):
            start = time.perf_counter()
            call()
            times[call].append(time.perf_counter() - start)
    return np.array(times[local]) * 1000.0, np.array(times[remote]) * 1000.0


def _row(label: str, millis: np.ndarray) -> str:
    values = "".join(f"{np.percentile(millis, p):10.1f}" for p in PERCENTILES)
    return f"{label:<22}{values}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side (256)")
    parser.add_argument("--num-classes", type=int, default=151, help="classes (151, ADE20K)")
    parser.add_argument("--base-filters", type=int, default=16,
                        help="generator width (16; the paper's is 64)")
    parser.add_argument("--spade-hidden-filters", type=int, default=32,
                        help="SPADE hidden width (32; the paper's is 128)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--iterations", type=int, default=30, help="timed calls per case (30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per case (3)")
    add_json_argument(parser)
    args = parser.parse_args()
    info = machine()

    model = ModelConfig(num_classes=args.num_classes, crop_size=args.size,
                        base_filters=args.base_filters,
                        spade_hidden_filters=args.spade_hidden_filters)
    work = Path(tempfile.mkdtemp(prefix="spade-serving-bench-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    keras.utils.set_random_seed(0)
    progress("building and exporting the model")
    save_model_dir(work / "model", ModelDir(Config(model=model), build_generator(model)))
    version = export_model(work / "model", work / "exports", "spade",
                           max_batch_size=max(args.batches))
    loaded = tf.saved_model.load(str(version))
    signature = loaded.signatures[sig.DEFAULT_SIGNATURE]
    server = SpadeServer(version.parent, "spade", port=0, poll_seconds=0)
    server.start()
    client = SpadeClient(server.address, "spade", timeout=600.0)

    rng = np.random.default_rng(0)
    height, width = model.image_size
    results = {}
    try:
        for batch in args.batches:
            labels = rng.integers(0, args.num_classes, (batch, height, width)).astype(np.int32)
            progress(f"timing batch {batch}: {args.iterations} calls on each path")
            local, remote = _paired(
                lambda labels=labels: signature(label_ids=tf.constant(labels))[sig.IMAGE].numpy(),
                lambda labels=labels: client.predict({sig.LABEL_IDS: labels}),
                args.iterations, args.warmup)
            # The same computation on both paths: the images must be identical.
            np.testing.assert_array_equal(
                client.predict({sig.LABEL_IDS: labels}).outputs[sig.IMAGE],
                signature(label_ids=tf.constant(labels))[sig.IMAGE].numpy())
            results[batch] = (local, remote)
    finally:
        client.close()
        server.stop(grace=1.0).wait(10)

    info["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(machine_line(info))
    print(f"model: {height}x{width}, {args.num_classes} classes (one-hot in the graph), "
          f"base_filters {args.base_filters}, spade_hidden_filters "
          f"{args.spade_hidden_filters} (paper: 64 / 128), random weights")
    print(f"{args.iterations} timed calls per case after {args.warmup} warm-up calls, the two "
          "paths interleaved; one request at a time; gRPC over 127.0.0.1 to the embedded "
          "server in this process")
    print(f"{'latency (ms)':<22}" + "".join(f"{'p' + str(p):>10}" for p in PERCENTILES))
    for batch, (local, remote) in results.items():
        request_mib = batch * height * width * 4 / 2**20
        response_mib = batch * height * width * 3 / 2**20
        print(f"-- batch {batch} (request {request_mib:.2f} MiB int32 ids, response "
              f"{response_mib:.2f} MiB uint8)")
        print(_row("in-process signature", local))
        print(_row("gRPC round trip", remote))
        overhead = [(np.percentile(remote, p) - np.percentile(local, p))
                    / np.percentile(local, p) for p in PERCENTILES]
        print(f"{'serving overhead':<22}" + "".join(f"{o:>9.1%} " for o in overhead))
        paired = remote - local
        print(f"{'per-pair gRPC - local':<22}{np.median(paired):10.1f} ms median, "
              f"{np.median(paired) / np.median(local):.1%} of the in-process median")
    write_json(args.json, {
        "benchmark": "serving_latency", "machine": info, "image_size": [height, width],
        "num_classes": args.num_classes, "base_filters": args.base_filters,
        "spade_hidden_filters": args.spade_hidden_filters, "iterations": args.iterations,
        "warmup": args.warmup,
        "batches": {str(batch): {
            "in_process_ms": {f"p{p}": float(np.percentile(local, p)) for p in PERCENTILES},
            "grpc_ms": {f"p{p}": float(np.percentile(remote, p)) for p in PERCENTILES},
            "paired_overhead_ms_median": float(np.median(remote - local)),
        } for batch, (local, remote) in results.items()}})


if __name__ == "__main__":
    main()
