"""`make demo`'s script runs every stage end to end (tiny settings) and stops its server."""

import json
import subprocess
import sys

import numpy as np
from conftest import ROOT
from PIL import Image

DEMO = ROOT / "scripts" / "demo.py"


def test_demo_runs_every_stage_and_reports(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(DEMO), "--out", str(out), "--scenes", "16", "--held-out", "2",
         "--epochs", "1", "--size", "32"],
        capture_output=True, text=True, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for number in range(1, 7):
        assert f"[demo] == {number}/6 " in result.stdout
    assert "spade-serve stopped" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    grid = np.asarray(Image.open(out / "demo.png"))
    assert grid.shape == (2 * 32 * 2, 3 * 32 * 2, 3)  # 2 rows of label | generated | real, x2
    # The real photos are the ceiling: their colours give back every label.
    assert summary["real_photo_miou"] == 1.0
    assert 0.0 <= summary["synthetic_miou"] <= 1.0
    assert (out / "exports" / "spade" / "1" / "saved_model.pb").is_file()
    assert str(summary["synthetic_miou"])[:5] in result.stdout or \
        f"{summary['synthetic_miou']:.3f}" in result.stdout


def test_a_failing_stage_is_named(tmp_path):
    result = subprocess.run(
        [sys.executable, str(DEMO), "--out", str(tmp_path / "demo"), "--scenes", "4",
         "--held-out", "1", "--epochs", "1", "--size", "30"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "FAILED at stage '1/6 synthetic scenes'" in result.stderr
