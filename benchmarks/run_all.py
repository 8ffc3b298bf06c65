"""Every benchmark in turn, each in its own process, then one summary line per figure.

Runs generator_vs_torch, training_step, input_pipeline and serving_latency (their full
tables are printed as they finish), collects their ``--json`` figures and prints a
combined summary. About 9 minutes on a quiet 2-core machine (longer when other jobs
share the CPU: the timed scripts wait up to a minute per row for quiet); ``--quick``
(smaller images, fewer repeats, passed on to each script) takes a few minutes.

    python benchmarks/run_all.py [--quick] [--only generator_vs_torch training_step]
                                 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    REPO_ROOT,
    add_json_argument,
    format_table,
    machine,
    machine_line,
    progress,
    write_json,
)

HERE = Path(__file__).resolve().parent
# name -> (arguments by default, arguments with --quick). The defaults keep the whole
# run near 9 minutes on a quiet 2-core machine; run a script alone for more repeats.
BENCHMARKS = {
    "generator_vs_torch": (["--repeats", "6", "--warmup", "2"], ["--quick"]),
    "training_step": (["--repeats", "3"], ["--quick"]),
    "input_pipeline": ([], ["--num", "32", "--epochs", "2"]),
    "serving_latency": ([], ["--iterations", "8", "--warmup", "2", "--batches", "1"]),
}


def run(name: str, arguments: list[str], json_path: Path, timeout: float) -> float:
    """Run one benchmark (its stdout and stderr pass through); returns the seconds taken."""
    command = [sys.executable, str(HERE / f"{name}.py"), *arguments, "--json", str(json_path)]
    progress(f"{name}: {' '.join(command[1:])}")
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
        framework = "PyTorch" if result["framework"] == "torch" else "Keras"
        return f"{framework} {result['precision']} {result['mode']}"

    for result in results.values():
        torch_result = results.get(f"torch-{result['precision']}")
        note = "" if result["of_quiet"] else "few quiet calls: median of all calls"
        if result["framework"] == "keras" and torch_result is not None:
            ratio = result["median_ms"] / torch_result["median_ms"]
            note = f"{ratio:.2f}x PyTorch's time" + (f"; {note}" if note else "")
        rows.append((bench, label(result), f"{result['median_ms']:.0f}", "ms", note))
        rows.append((bench, f"{label(result)}: peak RSS",
                     f"{result['memory']['peak_rss_mib']:.0f}", "MiB",
                     f"+{result['inference_rss_increase_mib']:.0f} MiB during inference"))
    for name, entry in figures["accuracy"].items():
        result = results[name]
        for key, what in (("vs_torch_float32", "max |x - PyTorch float32|"),
                          ("vs_same_framework_float32", "max |bf16 - float32|")):
            if key in entry and (key != "vs_torch_float32" or result["precision"] == "float32"):
                rows.append((bench, f"{label(result)}: {what}",
                             f"{entry[key]['max_abs']:.2e}", "",
                             f"mean {entry[key]['mean_abs']:.2e}"))
    return rows


def _training_rows(figures: dict) -> list[tuple]:
    rows = []
    for result in figures["results"]:
        height, width = result["image_size"]
        vgg = "VGG on" if result["vgg_weight"] > 0 else "no VGG"
        label = (f"{result['case']} {height}x{width} b{result['batch_size']} {vgg} "
                 f"{result['precision']}{' XLA' if result['jit_compile'] else ''}")
        rows.append(("training step", label, f"{result['median_step_s']:.3f}", "s/step",
                     f"{result['examples_per_s']:.2f} examples/s, peak RSS "
                     f"{result['memory']['peak_rss_mib']:.0f} MiB"))
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
    width = f"base_filters {figures['base_filters']}"
    for batch, entry in figures["batches"].items():
        local, remote = entry["in_process_ms"]["p50"], entry["grpc_ms"]["p50"]
        rows.append(("serving", f"in-process p50, batch {batch}, {width}", f"{local:.1f}",
                     "ms", ""))
        rows.append(("serving", f"gRPC p50, batch {batch}, {width}", f"{remote:.1f}", "ms",
                     f"overhead {(remote - local) / local:.1%}"))
    return rows


SUMMARIES = {"generator_vs_torch": _generator_rows, "training_step": _training_rows,
             "input_pipeline": _input_rows, "serving_latency": _serving_rows}


def print_summary(info: dict, seconds: dict, figures: dict, failures: dict,
                  quick: bool) -> list[tuple]:
    """The combined table: one row per figure; returns the rows."""
    rows = [row for name, data in figures.items() for row in SUMMARIES[name](data)]
    print("=" * 30 + " summary " + "=" * 30)
    print(machine_line(info))
    print("run: " + ", ".join(f"{name} {secs:.0f} s" for name, secs in seconds.items())
          + (" (quick)" if quick else ""))
    print(format_table(["benchmark", "figure", "value", "unit", "note"], rows, align="llrll"))
    for name, error in failures.items():
        print(f"FAILED {name}: {error}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]))
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
            full, quick = BENCHMARKS[name]
            path = Path(work) / f"{name}.json"
            try:
                seconds[name] = run(name, quick if args.quick else full, path, args.timeout)
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
    main()
