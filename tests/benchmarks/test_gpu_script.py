"""benchmarks/gpu.py runs without a GPU (its CPU quick mode) and reports every row."""

import json
import sys

import pytest
from support import ROOT, import_torch
from support.processes import command_env
from support.runs import session_run

# Deselect with -m "not slow and not benchmark" (make test runs it).
pytestmark = pytest.mark.benchmark


@session_run
def gpu_benchmark(folder, processes):
    """(the script's CompletedProcess, its JSON figures file)."""
    out = folder / "gpu.json"
    done = processes.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--repeats", "1", "--warmup", "1",
         "--json", str(out)], timeout=600, cwd=ROOT, env=command_env())
    return done, out


def test_gpu_benchmark_runs_in_its_cpu_quick_mode(gpu_benchmark):
    import_torch()  # the script's PyTorch rows need it
    done, out = gpu_benchmark
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["quick"] and figures["machine"]["accelerators"] == [
        "CPU (no GPU: quick mode)"]
    names = {section: [row["name"] for row in figures[section]]
             for section in ("generator", "training")}
    assert names == {
        "generator": ["ours float32", "ours bfloat16", "ours float32 XLA", "ours bfloat16 XLA",
                      "PyTorch float32", "PyTorch bfloat16 autocast"],
        "training": ["ours mixed_bfloat16, 1 device", "ours mixed_bfloat16, 2 devices",
                     "PyTorch autocast bfloat16, 1 device"]}
    assert figures["batch"] == 2  # quick mode: 2 images per call (per device in training)
    printed = {cells[0]: cells[1:] for cells in (
        [cell.strip() for cell in line.split(" | ")] for line in done.stdout.splitlines())}
    for row in figures["generator"] + figures["training"]:
        # Measured, and printed as written to the JSON file (the table a reader sees).
        assert row["median_ms"] > 0 and row["images_per_s"] > 0, row
        assert printed[row["name"]][:2] == [f"{row['median_ms']:.1f}",
                                            f"{row['images_per_s']:.2f}"], row
    assert [row["devices"] for row in figures["training"]] == [1, 2, 1]
    assert "images/s" in done.stdout and "quick mode" in done.stdout
