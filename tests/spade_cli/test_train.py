"""spade-train as a user meets it: failed starts, Ctrl-C and resume, bad data, bad splits."""

import json
import re
import shutil
import signal
import time

import tensorflow as tf
from support import ROOT
from support.processes import assert_one_line_error
from support.runs import session_run
from support.synthetic_data import write_training_records

CONFIG = ROOT / "configs" / "demo.yaml"
# 12 scenes, batches of 4: 3 steps per epoch, 9 in all; a checkpoint after every step.
SETTINGS = ["--set", "train.batch_size=4", "--set", "train.epochs=3",
            "--set", "train.checkpoint_every_steps=1", "--verbose", "2"]
TOTAL = 9


def _command(records, model_dir, *extra, data=None) -> tuple:
    return ("spade-train", "--config", CONFIG, "--data", data or records, "--model-dir",
            model_dir, *SETTINGS, *extra)


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


def _latest(model_dir) -> str | None:
    return tf.train.latest_checkpoint(str(model_dir / "checkpoints"))


@session_run
def interrupted_training(folder, processes):
    """Failed starts, then a run interrupted with Ctrl-C once a step is checkpointed, then
    the same command twice: what the test checks, as it was at each point."""
    records = write_training_records(folder / "scenes", folder / "records")
    seen = {"model_dir": folder / "run",
            "lying": _with_wrong_class_count(records, folder / "lying", 4),
            "refused": {name: folder / name for name in ("classes", "no_data", "crash")}}
    # The failed starts, each into a folder of its own, run beside the interrupted run.
    failed_starts = {name: processes.start_command(*command) for name, command in (
        ("classes", _command(records, seen["refused"]["classes"],
                             "--set", "model.num_classes=150")),
        ("no_data", _command(records, seen["refused"]["no_data"],
                             data=folder / "no-such-data")),
        ("crash", _command(records, seen["refused"]["crash"], "--set", "model.num_classes=4",
                           data=seen["lying"])))}
    model_dir = seen["model_dir"]
    process = processes.start_command(*_command(records, model_dir))
    deadline = time.monotonic() + 400
    while not (model_dir / "checkpoints" / "checkpoint").is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            processes.kill(process)
            raise RuntimeError("no checkpoint within 400 s:\n" + "".join(process.communicate()))
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    seen["interrupted"] = processes.finish(process, 300)
    seen["latest_after_interrupt"] = _latest(model_dir)
    seen["failed_starts"] = {name: processes.finish(started, 600)
                             for name, started in failed_starts.items()}
    seen["resumed"] = processes.finish(processes.start_command(*_command(records, model_dir)), 600)
    seen["latest_after_resume"] = _latest(model_dir)
    seen["files_before_again"] = _files(model_dir)
    seen["again"] = processes.finish(processes.start_command(*_command(records, model_dir)), 600)
    return seen


def test_failed_starts_leave_nothing_and_ctrl_c_keeps_the_work(interrupted_training):
    seen = interrupted_training
    failed, refused, lying = seen["failed_starts"], seen["refused"], seen["lying"]
    # Case 2: the data has 8 classes; the model asks for 150. Refused, nothing written.
    assert_one_line_error(failed["classes"], "spade-train", "the data has 8 classes",
                          "num_classes=150")
    assert not refused["classes"].exists()
    assert_one_line_error(failed["no_data"], "spade-train", "no-such-data has no manifest.json")
    assert not refused["no_data"].exists()
    # A crash in step one (label ids the model does not know): one clean line naming the
    # id and the data folder, no TensorFlow internals, and the folder is taken back.
    line = assert_one_line_error(failed["crash"], "spade-train", str(lying),
                                 "label ids must be in 0..3; found id")
    assert re.search(r"found id [4-7] \(occurrences: \d+\)", line), line
    assert "function_node" not in failed["crash"].stderr and "Op:" not in line
    assert not refused["crash"].exists(), _files(refused["crash"])

    # Case 9: the corrected command starts; Ctrl-C once a step is checkpointed.
    model_dir, interrupted = seen["model_dir"], seen["interrupted"]
    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    assert "Traceback" not in interrupted.stderr, interrupted.stderr[-3000:]
    last = interrupted.stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"spade-train: interrupted at step (\d+); run the same command to "
                         r"resume", last)
    assert match, interrupted.stderr[-3000:]
    step = int(match.group(1))
    assert 1 <= step < TOTAL
    assert seen["latest_after_interrupt"].endswith(f"ckpt-{step}")
    assert (model_dir / "config.yaml").is_file()

    # The same command resumes at that step, numbers epochs over the whole run, ends.
    result = seen["resumed"]
    assert result.returncode == 0, result.stderr[-3000:]
    epoch = step // 3 + 1
    assert f"spade-train: resuming at step {step} (epoch {epoch} of 3)" in result.stderr
    # --verbose 2: one line per epoch, opened by its number over the whole run.
    shown = re.findall(r"^Epoch (\d+)/(\d+) - \d+/3 steps - ", result.stdout, re.M)
    assert shown and shown[0] == (str(epoch), "3"), result.stdout
    assert all(total == "3" for _, total in shown), shown
    assert result.stdout.strip().splitlines()[-1] == (
        f"spade-train: step {TOTAL} of {TOTAL} (started at {step}); model folder {model_dir}")
    assert seen["latest_after_resume"].endswith(f"ckpt-{TOTAL}")
    # Once more: finished, one line, nothing trained.
    result = seen["again"]
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [f"spade-train: {model_dir} is finished (step {TOTAL} of {TOTAL}): "
                     "nothing to do; raise train.epochs to train longer."], lines
    assert _files(model_dir) == seen["files_before_again"]


@session_run
def bad_starts(folder, processes):
    """A shard corrupted in place, and replica counts that cannot share the batch, each
    refused at the start (all three at once): {name: CompletedProcess} and the paths."""
    records = write_training_records(folder / "scenes", folder / "records")
    broken = shutil.copytree(records, folder / "broken")
    shard = sorted(broken.glob("*.tfrecord"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: passes the manifest's size check
    shard.write_bytes(bytes(data))
    started = {name: processes.start_command(*command) for name, command in (
        ("corrupt_shard", _command(records, folder / "corrupt_run", data=broken)),
        ("three_replicas", _command(records, folder / "run", "--cpu-replicas", "3",
                                    "--set", "train.batch_size=8")),
        ("negative_replicas", _command(records, folder / "run", "--cpu-replicas", "-1")))}
    return {"shard": shard, "folder": folder,
            **{name: processes.finish(process, 600) for name, process in started.items()}}


def test_a_corrupt_shard_at_the_start_is_named(bad_starts):
    shard, folder = bad_starts["shard"], bad_starts["folder"]
    assert_one_line_error(bad_starts["corrupt_shard"], "spade-train",
                          f"shard {shard} is corrupt after")
    assert not (folder / "corrupt_run").exists()


def test_replica_counts_that_cannot_share_the_batch_are_refused(bad_starts):
    assert_one_line_error(bad_starts["three_replicas"], "spade-train", "--cpu-replicas 3",
                          "train.batch_size=8", "use 1, 2, 4 or 8 replicas",
                          "a train.batch_size that 3 divides (6, 9, 12 ...)")
    assert_one_line_error(bad_starts["negative_replicas"], "spade-train", "--cpu-replicas",
                          "'-1' is not a replica count")
    assert not (bad_starts["folder"] / "run").exists()
