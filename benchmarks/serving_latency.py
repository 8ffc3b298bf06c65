"""Serving latency: the SavedModel signature in-process next to gRPC and REST round trips.

Exports an ADE20K-shaped model (151 classes, 256x256, random weights) and times
1) in-process: ``tf.saved_model.load(...).signatures["serving_default"]`` on int32 label
   ids, output to numpy;
2) gRPC: ``SpadeClient.predict`` through the embedded server (``serving.server``) on
   127.0.0.1, which adds TensorProto conversion on both sides, the HTTP/2 transfer and the
   server's request checks;
3) REST: TF Serving's REST API of the same server (``POST /v1/models/spade:predict`` with
   ``{"instances": ...}`` label ids as JSON, the image back as JSON integers), over
   http.client on 127.0.0.1: what curl users pay;
4) REST PNG: the painter page's request, ``synthesize_png`` with the label map as a PNG
   and the image back as a PNG (both base64 in JSON),
at batch 1 and batch 8, one request at a time, the four paths interleaved, and prints
p50 / p90 / p99 and each path's overhead ``(remote - in-process) / in-process``. The
defaults are narrower than the paper's network; ``--full-size`` (64 base filters, 128
SPADE hidden filters) gives the interactive latency of the real model, and ``--precision
bfloat16`` serves a bf16 export.

    python benchmarks/serving_latency.py [--size 256] [--base-filters 16] [--iterations 30]
                                         [--full-size] [--precision bfloat16] [--json OUT]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import http.client
import io
import json
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
    run_script,
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


def _interleaved(calls: dict, iterations: int, warmup: int) -> dict:
    """Latencies (ms) of every call, interleaved (order rotating) so drift hits all."""
    for _ in range(warmup):  # first calls pay for graph optimisation and thread pools
        for call in calls.values():
            call()
    names = list(calls)
    times = {name: [] for name in names}
    for index in range(iterations):
        for name in names[index % len(names):] + names[:index % len(names)]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return {name: np.array(values) * 1000.0 for name, values in times.items()}


def _png(labels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _rest_document(host: str, port: int, body: str) -> dict:
    connection = http.client.HTTPConnection(host, port, timeout=600)
    try:
        connection.request("POST", "/v1/models/spade:predict", body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        document = json.loads(response.read())
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"REST predict failed ({response.status}): {document}")
    return document


def _rest_predict(host: str, port: int, labels: np.ndarray) -> np.ndarray:
    """One REST predict of label ids as JSON, on a new connection, as a curl user makes it."""
    body = json.dumps({"instances": [{sig.LABEL_IDS: example.tolist()}
                                     for example in labels]})
    return np.array(_rest_document(host, port, body)["predictions"], np.uint8)


def _rest_png(host: str, port: int, label_pngs: list[bytes]) -> np.ndarray:
    """The painter's request: synthesize_png, label PNGs in and image PNGs out as b64."""
    from PIL import Image

    body = json.dumps({"signature_name": sig.PNG_SIGNATURE, "inputs": {
        sig.LABEL_PNG: [{"b64": base64.b64encode(png).decode()} for png in label_pngs]}})
    outputs = _rest_document(host, port, body)["outputs"]
    outputs = outputs[sig.IMAGE_PNG] if isinstance(outputs, dict) else outputs
    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(item["b64"]))))
                     for item in outputs])


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
    parser.add_argument("--full-size", action="store_true",
                        help="the paper's widths: --base-filters 64 --spade-hidden-filters 128")
    parser.add_argument("--precision", default="float32",
                        choices=("float32", "bfloat16", "float16"),
                        help="the export's precision (float32)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--iterations", type=int, default=30, help="timed calls per case (30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per case (3)")
    add_json_argument(parser)
    args = parser.parse_args()
    if args.full_size:
        args.base_filters, args.spade_hidden_filters = 64, 128
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
                           max_batch_size=max(args.batches), precision=args.precision)
    loaded = tf.saved_model.load(str(version))
    signature = loaded.signatures[sig.DEFAULT_SIGNATURE]
    server = SpadeServer(version.parent, "spade", port=0, poll_seconds=0, rest_port=0)
    server.start()
    client = SpadeClient(server.address, "spade", timeout=600.0)
    rest_host, rest_port = "127.0.0.1", server.rest.port

    rng = np.random.default_rng(0)
    height, width = model.image_size
    results = {}
    try:
        for batch in args.batches:
            labels = rng.integers(0, args.num_classes, (batch, height, width)).astype(np.int32)
            progress(f"timing batch {batch}: {args.iterations} calls on each path")
            pngs = [_png(example) for example in labels]
            calls = {
                "in-process": lambda labels=labels: signature(
                    label_ids=tf.constant(labels))[sig.IMAGE].numpy(),
                "gRPC": lambda labels=labels: client.predict({sig.LABEL_IDS: labels}),
                "REST": lambda labels=labels: _rest_predict(rest_host, rest_port, labels),
                "REST PNG": lambda pngs=pngs: _rest_png(rest_host, rest_port, pngs),
            }
            results[batch] = _interleaved(calls, args.iterations, args.warmup)
            # The same computation on every path: the images must be identical.
            image = signature(label_ids=tf.constant(labels))[sig.IMAGE].numpy()
            np.testing.assert_array_equal(
                client.predict({sig.LABEL_IDS: labels}).outputs[sig.IMAGE], image)
            np.testing.assert_array_equal(_rest_predict(rest_host, rest_port, labels), image)
            np.testing.assert_array_equal(_rest_png(rest_host, rest_port, pngs), image)
    finally:
        client.close()
        server.stop(grace=1.0).wait(10)

    info["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(machine_line(info))
    print(f"model: {height}x{width}, {args.num_classes} classes (one-hot in the graph), "
          f"base_filters {args.base_filters}, spade_hidden_filters "
          f"{args.spade_hidden_filters} (paper: 64 / 128), random weights, export precision "
          f"{args.precision}")
    print(f"{args.iterations} timed calls per case after {args.warmup} warm-up calls, the four "
          "paths interleaved; one request at a time; gRPC and REST over 127.0.0.1 to the "
          "embedded server in this process")
    print(f"{'latency (ms)':<22}" + "".join(f"{'p' + str(p):>10}" for p in PERCENTILES))
    for batch, paths in results.items():
        request_mib = batch * height * width * 4 / 2**20
        response_mib = batch * height * width * 3 / 2**20
        print(f"-- batch {batch} (gRPC request {request_mib:.2f} MiB int32 ids, response "
              f"{response_mib:.2f} MiB uint8; REST sends and receives JSON integers)")
        local = paths["in-process"]
        for name, millis in paths.items():
            print(_row(name if name == "in-process" else f"{name} round trip", millis))
        for name in ("gRPC", "REST", "REST PNG"):
            overhead = [(np.percentile(paths[name], p) - np.percentile(local, p))
                        / np.percentile(local, p) for p in PERCENTILES]
            print(f"{name + ' overhead':<22}" + "".join(f"{o:>9.1%} " for o in overhead))
    write_json(args.json, {
        "benchmark": "serving_latency", "machine": info, "image_size": [height, width],
        "num_classes": args.num_classes, "base_filters": args.base_filters,
        "spade_hidden_filters": args.spade_hidden_filters, "precision": args.precision,
        "iterations": args.iterations, "warmup": args.warmup,
        "batches": {str(batch): {
            f"{key}_ms": {f"p{p}": float(np.percentile(paths[name], p)) for p in PERCENTILES}
            for key, name in (("in_process", "in-process"), ("grpc", "gRPC"), ("rest", "REST"),
                              ("rest_png", "REST PNG"))
        } for batch, paths in results.items()}})


if __name__ == "__main__":
    run_script(main)
