"""Every benchmark in turn, each in its own process, then one summary of the figures.

Runs generator_vs_torch (at 256x256 and 512x512), training_step (ours and PyTorch's),
input_pipeline, serving_latency (the paper's full-size network over gRPC and REST, in
float32 and bfloat16) and serving_load (spade-serve under 1 to 256 concurrent clients);
their full tables are printed as they finish. Then a summary: the machine (CPU name,
cores, bf16/AMX features), our time over PyTorch's for inference (float32 and bfloat16;
in-process and exported) and training steps, peak memory beside each time, the
interactive latencies, the load figures, and CLADE's generator against SPADE's
(clade_vs_spade: ours and PyTorch's, 256x256 and 512x512), the generator on each Keras
backend (backends: TensorFlow, JAX, PyTorch), and the TFLite exports against the
SavedModel (tflite_export). About 19 minutes on a quiet 2-core machine, about 12 more
for clade_vs_spade and 5 for tflite_export (longer when other jobs share the
CPU: the timed scripts wait up to a minute per row for quiet); ``--quick`` (smaller
images, fewer repeats) takes about 10.

    python benchmarks/run_all.py [--quick] [--only generator_256 training_step]
                                 [--json OUT]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.clade_vs_spade import summary_rows as clade_rows  # noqa: E402
from benchmarks.common import (  # noqa: E402
    REPO_ROOT,
    add_json_argument,
    format_table,
    machine,
    machine_line,
    progress,
    run_script,
    script_parser,
    write_json,
)
from benchmarks.tflite_export import summary_rows as tflite_rows  # noqa: E402
from benchmarks.training_step import torch_counterpart  # noqa: E402

HERE = Path(__file__).resolve().parent
# name -> (script, arguments by default, arguments with --quick). The defaults keep the
# whole run near 16 minutes on a quiet 2-core machine; run a script alone for more repeats.
BENCHMARKS = {
    "generator_256": ("generator_vs_torch", ["--repeats", "5", "--warmup", "2"],
                      ["--quick"]),
    "generator_512": ("generator_vs_torch", ["--crop-size", "512", "--repeats", "3",
                                             "--warmup", "1"],
                      ["--quick", "--crop-size", "192"]),
    "training_step": ("training_step", ["--repeats", "3", "--cases", "ade20k"],
                      ["--quick", "--cases", "ade20k"]),
    "input_pipeline": ("input_pipeline", [], ["--num", "32", "--epochs", "2"]),
    "serving_float32": ("serving_latency", ["--full-size", "--batches", "1",
                                            "--iterations", "6", "--warmup", "2"],
                        ["--iterations", "4", "--warmup", "1", "--batches", "1"]),
    "serving_bfloat16": ("serving_latency", ["--full-size", "--precision", "bfloat16",
                                             "--batches", "1", "--iterations", "6",
                                             "--warmup", "2"],
                         ["--precision", "bfloat16", "--iterations", "4", "--warmup", "1",
                          "--batches", "1"]),
    "serving_load": ("serving_load", [], ["--quick"]),
    "clade_vs_spade": ("clade_vs_spade", ["--repeats", "3", "--warmup", "1"], ["--quick"]),
    "tflite_export": ("tflite_export", ["--repeats", "5"], ["--quick", "--norm-modes", "clade"]),
    "backends": ("backends", ["--repeats", "3", "--warmup", "2"], ["--quick"]),
}


def run(script: str, arguments: list[str], json_path: Path, timeout: float) -> float:
    """Run one benchmark (its stdout and stderr pass through); returns the seconds taken."""
    command = [sys.executable, str(HERE / f"{script}.py"), *arguments, "--json", str(json_path)]
    progress(f"{script}: {' '.join(command[1:])}")
    start = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    subprocess.run(command, check=True, timeout=timeout, cwd=REPO_ROOT, env=env)
    return time.perf_counter() - start


# -- one summary row per figure: (benchmark, figure, value, unit, note) ---------------


def _generator_rows(figures: dict) -> list[tuple]:
    height, width = figures["setup"]["image_size"]
    bench = f"generator {height}x{width} b1"
    results, rows = figures["results"], []

    def label(result: dict) -> str:
        framework = "PyTorch" if result["framework"] == "torch" else "ours"
        return f"{framework} {result['precision']} {result['mode']}"

    for name, result in results.items():
        torch_result = results.get(f"torch-{result['precision']}")
        notes = [] if result["of_quiet"] else ["few quiet calls: median of all calls"]
        memory = result["memory"]["peak_rss_mib"]
        if result["framework"] == "keras" and torch_result is not None:
            notes.insert(0, f"{result['median_ms'] / torch_result['median_ms']:.2f}x PyTorch's "
                            f"time, {memory / torch_result['memory']['peak_rss_mib']:.2f}x "
                            "its peak RSS")
        same = figures["accuracy"].get(name, {}).get("vs_same_framework_float32")
        if same is not None:
            notes.append(f"max |x - float32| {same['max_abs']:.3f}")
        rows.append((bench, label(result), f"{result['median_ms']:.0f}", "ms",
                     f"peak RSS {memory:.0f} MiB" + "".join(f"; {n}" for n in notes)))
    return rows


def _training_rows(figures: dict) -> list[tuple]:
    rows = []
    results = figures["results"]
    for result in results:
        height, width = result["image_size"]
        vgg = "VGG on" if result["vgg_weight"] > 0 else "no VGG"
        framework = "PyTorch" if result.get("framework") == "torch" else "ours"
        label = (f"{result['case']} {height}x{width} b{result['batch_size']} {vgg}, "
                 f"{framework} {result['precision']}{' XLA' if result['jit_compile'] else ''}")
        memory = result["memory"]["peak_rss_mib"]
        note = f"peak RSS {memory:.0f} MiB"
        torch_result = torch_counterpart(result, results)
        if torch_result is not None:
            note += (f"; {result['median_step_s'] / torch_result['median_step_s']:.2f}x "
                     f"PyTorch's time, {memory / torch_result['memory']['peak_rss_mib']:.2f}x "
                     "its peak RSS")
        rows.append(("training step", label, f"{result['median_step_s']:.3f}", "s/step",
                     note))
    return rows


def _input_rows(figures: dict) -> list[tuple]:
    size = figures["size"]
    return [("input pipeline", f"decode only {size}x{size}",
             f"{figures['decode_examples_per_s']:.1f}", "examples/s", ""),
            ("input pipeline", f"training pipeline {size}x{size} batch {figures['batch']}",
             f"{figures['pipeline_examples_per_s']:.1f}", "examples/s",
             f"resize {figures['load_size']}, crop, flip")]


def _serving_rows(figures: dict) -> list[tuple]:
    rows = []
    height, width = figures["image_size"]
    bench = f"serving {height}x{width} {figures.get('precision', 'float32')}"
    model = f"base_filters {figures['base_filters']}"
    for batch, entry in figures["batches"].items():
        local = entry["in_process_ms"]["p50"]
        rows.append((bench, f"in-process p50, batch {batch}, {model}", f"{local:.1f}", "ms",
                     ""))
        for key, name in (("grpc_ms", "gRPC"), ("rest_ms", "REST JSON ids"),
                          ("rest_png_ms", "REST PNG (painter)")):
            if key in entry:
                remote = entry[key]["p50"]
                rows.append((bench, f"{name} p50, batch {batch}, {model}", f"{remote:.1f}",
                             "ms", f"overhead {(remote - local) / local:.1%}"))
    return rows


def _load_rows(figures: dict) -> list[tuple]:
    by = {(row["batching"], row["transport"], row["clients"]): row for row in figures["load"]}
    rows = []
    for (batching, transport, clients), row in by.items():
        if clients in (64, 256):
            rows.append(("serving load (demo model)",
                         f"{transport}, {clients} clients, batching {batching}",
                         f"{row['requests_per_s']:.1f}", "requests/s",
                         f"{row['failed']} of {row['requests']} failed; p99 "
                         f"{row['p99_ms']} ms"))
    slow = figures["slow_clients"]
    rows.append(("serving load (demo model)", "status GET behind 16 slow uploads + 300 idle",
                 f"{slow['status_get_ms']:.1f}", "ms",
                 f"prediction {slow['prediction_ms']:.1f} ms"))
    return rows


def _backend_rows(figures: dict) -> list[tuple]:
    size = figures["setup"]["crop_size"]
    base = figures["results"]["tensorflow tf.function"]["median_ms"]
    return [(f"generator {size}x{size} b1 on each Keras backend", row,
             f"{result['median_ms']:.0f}", "ms",
             f"{result['median_ms'] / base:.2f}x TensorFlow's; image within "
             f"{result['max_vs_tensorflow']:.1e} of TensorFlow's")
            for row, result in figures["results"].items()]


SUMMARIES = {"generator_vs_torch": _generator_rows, "backends": _backend_rows,
             "training_step": _training_rows, "input_pipeline": _input_rows,
             "serving_latency": _serving_rows,
             "serving_load": _load_rows, "clade_vs_spade": clade_rows,
             "tflite_export": tflite_rows}


def print_summary(info: dict, seconds: dict, figures: dict, failures: dict,
                  quick: bool) -> list[tuple]:
    """The combined table: one row per figure; returns the rows."""
    rows = [row for name, data in figures.items()
            for row in SUMMARIES[BENCHMARKS[name][0]](data)]
    print("=" * 30 + " summary " + "=" * 30)
    print(machine_line(info))
    print("run: " + ", ".join(f"{name} {secs:.0f} s" for name, secs in seconds.items())
          + (" (quick)" if quick else ""))
    print(format_table(["benchmark", "figure", "value", "unit", "note"], rows, align="llrll"))
    for name, error in failures.items():
        print(f"FAILED {name}: {error}")
    return rows


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="pass --quick (or smaller sizes) to every benchmark")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS),
                        help="run only these benchmarks")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds allowed per benchmark (1800)")
    parser.add_argument("--summarize", metavar="JSON", type=Path, default=None,
                        help="run nothing: print the summary of an earlier run's --json file")
    add_json_argument(parser)
    args = parser.parse_args()

    if args.summarize is not None:
        saved = json.loads(args.summarize.read_text())
        print_summary(saved["machine"], saved["seconds"], saved["benchmarks"],
                      saved["failures"], saved["quick"])
        return

    info = machine()
    figures, seconds, failures = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="spade-benchmarks-") as work:
        for name in args.only:
            script, full, quick = BENCHMARKS[name]
            path = Path(work) / f"{name}.json"
            try:
                seconds[name] = run(script, quick if args.quick else full, path, args.timeout)
                figures[name] = json.loads(path.read_text())
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError,
                    json.JSONDecodeError) as error:
                failures[name] = str(error)
                progress(f"{name} FAILED: {error}")
            print(flush=True)

    info["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    rows = print_summary(info, seconds, figures, failures, args.quick)
    write_json(args.json, {"machine": info, "quick": args.quick, "seconds": seconds,
                           "failures": failures, "benchmarks": figures,
                           "summary": [dict(zip(("benchmark", "figure", "value", "unit",
                                                 "note"), row, strict=True)) for row in rows]})
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    run_script(main)
