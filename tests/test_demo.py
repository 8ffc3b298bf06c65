"""`make demo`'s script runs every stage end to end (tiny settings) and stops its server."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from support import ROOT
from support.processes import Processes
from support.runs import session_run

from spade_tf.evaluation.synthetic import BASE_COLORS, synthetic_scores

DEMO = ROOT / "scripts" / "demo.py"
SIZE, HELD_OUT = 32, 2


def run_demo(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """The demo in its own process group, killed whole (server included) on timeout."""
    processes = Processes()
    try:
        return processes.run([sys.executable, str(DEMO), *args], timeout)
    finally:
        processes.close()


@session_run
def tiny_demo(folder, processes):
    """(the demo's CompletedProcess, its --out folder); the demo's process group is killed
    whole (server included) on timeout."""
    out = folder / "demo"
    result = processes.run([sys.executable, str(DEMO), "--out", str(out), "--scenes", "16",
                            "--held-out", str(HELD_OUT), "--epochs", "1", "--size", str(SIZE)],
                           timeout=420)
    return result, out


def test_demo_runs_every_stage_and_reports(tiny_demo):
    result, out = tiny_demo
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The commands keep TensorFlow's C++ start-up lines to themselves; the demo filters nothing.
    noise = re.findall(r"^(?:[IWEF]\d{4} \d\d:\d\d.*|WARNING: All log messages before absl.*)$",
                       result.stdout + result.stderr, re.M)
    assert not noise, noise[:5]
    for number in range(1, 7):
        assert f"[demo] == {number}/6 " in result.stdout
    assert "spade-serve stopped" in result.stdout
    assert (out / "exports" / "spade" / "1" / "saved_model.pb").is_file()

    summary = json.loads((out / "summary.json").read_text())
    # spade-synthesize's contact sheet: a row per held-out map, label map | generated image.
    grid = np.asarray(Image.open(out / "demo.png"))
    assert grid.shape == (HELD_OUT * 192 + (HELD_OUT - 1) * 4, 2 * 192 + 4, 3)
    names = sorted(path.name for path in (out / "scenes" / "held_out" / "labels").glob("*.png"))
    labels = np.stack([np.asarray(Image.open(out / "scenes" / "held_out" / "labels" / name))
                       for name in names])
    # The label column shows the classes' colours, not the photo's.
    scale = 192 // SIZE
    np.testing.assert_array_equal(grid[:192:scale, :192:scale], BASE_COLORS[labels[0]])
    # The printed score is the one of the served images against the held-out maps.
    generated = np.stack([np.asarray(Image.open(out / "synthesized" / name)) for name in names])
    np.testing.assert_array_equal(grid[:192:scale, 196::scale], generated[0])
    expected = synthetic_scores(generated, labels)
    assert summary["synthetic_miou"] == pytest.approx(expected.mean_iou, abs=1e-12)
    assert f"{expected.mean_iou:.3f} (pixel accuracy {expected.pixel_accuracy:.3f})" \
        in result.stdout
    # The real photos are the ceiling: their colours give back every label.
    assert summary["real_photo_miou"] == 1.0
    assert f"spade-synthesize --model-dir {os.path.relpath(out / 'run')}" in result.stdout
    assert "make paint" in result.stdout


def test_a_failing_stage_is_named_and_other_folders_are_left_alone(tmp_path):
    out = tmp_path / "mine"
    (out / "run").mkdir(parents=True)
    (out / "run" / "precious.txt").write_text("keep")
    result = run_demo("--out", str(out), timeout=120)
    assert result.returncode == 1
    assert "FAILED at stage '1/6 synthetic scenes'" in result.stderr
    assert "was not written by the demo" in result.stderr
    assert (out / "run" / "precious.txt").read_text() == "keep"
