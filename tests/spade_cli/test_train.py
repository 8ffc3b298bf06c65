"""spade-train as a user meets it: failed starts, Ctrl-C and resume, bad data, bad splits."""

import json
import re
import shutil
import signal
import time

import pytest
import tensorflow as tf
from support import ROOT
from support.processes import assert_one_line_error, run_command, start_command
from support.synthetic_data import make_synthetic_records

from tfrecords_tools import synthetic

CONFIG = ROOT / "configs" / "demo.yaml"
# 12 scenes, batches of 4: 3 steps per epoch, 9 in all; a checkpoint after every step.
SETTINGS = ["--set", "train.batch_size=4", "--set", "train.epochs=3",
            "--set", "train.checkpoint_every_steps=1", "--verbose", "2"]
TOTAL = 9


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = synthetic.write_dataset(tmp_path_factory.mktemp("scenes"), 12, size=64, seed=3)
    return make_synthetic_records(folder, tmp_path_factory.mktemp("records"), num_shards=2)


def _train(records, model_dir, *extra, data=None):
    return run_command("spade-train", "--config", CONFIG, "--data", data or records,
                       "--model-dir", model_dir, *SETTINGS, *extra, timeout=600)


def _files(folder) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")} if folder.exists() \
        else set()


def _with_wrong_class_count(records, target, num_classes):
    """The records with a manifest that claims fewer classes than the label maps use."""
    shutil.copytree(records, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["num_classes"] = num_classes
    manifest["class_histogram"] = manifest.get("class_histogram", [])[:num_classes]
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_failed_starts_leave_nothing_and_ctrl_c_keeps_the_work(records, tmp_path):
    model_dir = tmp_path / "run"
    # Case 2: the data has 8 classes; the model asks for 150. Refused, nothing written.
    result = _train(records, model_dir, "--set", "model.num_classes=150")
    assert_one_line_error(result, "spade-train", "the data has 8 classes",
                          "num_classes=150")
    assert not model_dir.exists()
    result = _train(records, model_dir, data=tmp_path / "no-such-data")
    assert_one_line_error(result, "spade-train", "no-such-data has no manifest.json")
    assert not model_dir.exists()
    # A crash in step one (label ids the model does not know): one clean line naming the
    # id and the data folder, no TensorFlow internals, and the folder is taken back.
    lying = _with_wrong_class_count(records, tmp_path / "lying", 4)
    result = _train(records, model_dir, "--set", "model.num_classes=4", data=lying)
    line = assert_one_line_error(result, "spade-train", str(lying),
                                 "label ids must be in 0..3; found id")
    assert re.search(r"found id [4-7] \(occurrences: \d+\)", line), line
    assert "function_node" not in result.stderr and "Op:" not in line
    assert not model_dir.exists(), _files(model_dir)

    # Case 9: the corrected command starts; Ctrl-C once a step is checkpointed.
    process = start_command("spade-train", "--config", CONFIG, "--data", records,
                            "--model-dir", model_dir, *SETTINGS)
    deadline = time.monotonic() + 400
    while not (model_dir / "checkpoints" / "checkpoint").is_file():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 400 s"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"spade-train: interrupted at step (\d+); run the same command to "
                         r"resume", last)
    assert match, stderr[-3000:]
    step = int(match.group(1))
    assert 1 <= step < TOTAL
    latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert latest.endswith(f"ckpt-{step}")
    assert (model_dir / "config.yaml").is_file()

    # The same command resumes at that step, numbers epochs over the whole run, ends.
    result = _train(records, model_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    epoch = step // 3 + 1
    assert f"spade-train: resuming at step {step} (epoch {epoch} of 3)" in result.stderr
    shown = re.findall(r"^Epoch (\d+)/(\d+)$", result.stdout, re.M)
    assert shown and shown[0] == (str(epoch), "3"), result.stdout
    assert all(total == "3" for _, total in shown), shown
    assert result.stdout.strip().splitlines()[-1] == (
        f"spade-train: step {TOTAL} of {TOTAL} (started at {step}); model folder {model_dir}")
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith(f"ckpt-{TOTAL}")
    # Once more: finished, one line, nothing trained.
    before = _files(model_dir)
    result = _train(records, model_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [f"spade-train: {model_dir} is finished (step {TOTAL} of {TOTAL}): "
                     "nothing to do; raise train.epochs to train longer."], lines
    assert _files(model_dir) == before


def test_a_corrupt_shard_at_the_start_is_named(records, tmp_path):
    broken = shutil.copytree(records, tmp_path / "records")
    shard = sorted(broken.glob("*.tfrecord"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: passes the manifest's size check
    shard.write_bytes(bytes(data))
    result = _train(records, tmp_path / "run", data=broken)
    assert_one_line_error(result, "spade-train", f"shard {shard} is corrupt after")
    assert not (tmp_path / "run").exists()


def test_replica_counts_that_cannot_share_the_batch_are_refused(records, tmp_path):
    result = _train(records, tmp_path / "run", "--cpu-replicas", "3", "--set",
                    "train.batch_size=8")
    assert_one_line_error(result, "spade-train", "--cpu-replicas 3",
                          "train.batch_size=8", "use 1, 2, 4 or 8 replicas",
                          "a train.batch_size that 3 divides (6, 9, 12 ...)")
    result = _train(records, tmp_path / "run", "--cpu-replicas", "-1")
    assert_one_line_error(result, "spade-train", "--cpu-replicas", "'-1' is not a replica count")
    assert not (tmp_path / "run").exists()
