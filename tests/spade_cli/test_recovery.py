"""A finished run whose generator.keras was damaged comes back, and a training log written
to a file holds one line per epoch: through the real commands, on one tiny run."""

import re
import subprocess

import numpy as np
import tensorflow as tf
from PIL import Image
from support import ROOT
from support.processes import assert_one_line_error, command_args, command_env
from support.runs import session_run
from support.synthetic_data import write_training_records

CONFIG = ROOT / "configs" / "demo.yaml"
# 12 scenes in one batch: one step per epoch, two epochs, a checkpoint at each epoch's end.
SETTINGS = ["--set", "train.batch_size=12", "--set", "train.epochs=2"]


@session_run
def recovered_run(folder, processes):
    """Train with stdout in a file (as nohup or a cluster job does), cut generator.keras in
    half, then the commands a user tries, in order: {name: CompletedProcess} and paths."""
    records = write_training_records(folder / "scenes", folder / "records")
    model_dir, log = folder / "run", folder / "train.log"
    train = ("spade-train", "--config", CONFIG, "--data", records, "--model-dir", model_dir,
             *SETTINGS)
    with open(log, "w") as stdout:  # a file, not a terminal, not a pipe
        trained = subprocess.run(command_args(*train), stdout=stdout, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, text=True, env=command_env(),
                                 cwd=ROOT, timeout=600)
    seen = {"trained": trained, "log": log.read_text(), "model_dir": model_dir,
            "exports": folder / "exports", "scene": sorted((folder / "scenes" / "labels")
                                                           .glob("*.png"))[0]}
    if trained.returncode != 0:
        return seen
    generator = model_dir / "generator.keras"
    whole = generator.read_bytes()
    generator.write_bytes(whole[:len(whole) // 2])
    scene, synthesized = seen["scene"], folder / "synthesized.png"
    seen["synthesized"] = synthesized
    started = {name: processes.start_command(*command) for name, command in (
        ("export_damaged", ("spade-export", "--model-dir", model_dir, "--export-base",
                            folder / "refused")),
        ("export_checkpoint", ("spade-export", "--model-dir", model_dir, "--export-base",
                               seen["exports"], "--version", 1, "--checkpoint", "latest")),
        ("synthesize_checkpoint", ("spade-synthesize", "--model-dir", model_dir,
                                   "--checkpoint", "latest", "--labels", scene, "--instances",
                                   scene.parent.parent / "instances" / scene.name,
                                   "--out", synthesized)))}
    seen.update({name: processes.finish(process, 600) for name, process in started.items()})
    seen["retrained"] = processes.finish(processes.start_command(*train), 600)
    # Both only read the folder now: side by side.
    started = {"export_rewritten": processes.start_command(
        "spade-export", "--model-dir", model_dir, "--export-base", seen["exports"],
        "--version", 2), "again": processes.start_command(*train)}
    seen.update({name: processes.finish(process, 600) for name, process in started.items()})
    return seen


def test_a_log_file_gets_one_line_per_epoch(recovered_run):
    trained = recovered_run["trained"]
    assert trained.returncode == 0, trained.stderr[-3000:]
    log = recovered_run["log"]
    # No progress-bar frames: no colour codes, carriage returns or backspaces.
    assert not re.search("[\x1b\r\b]", log), repr(log[:500])
    lines = log.splitlines()
    assert len(lines) == 3, lines
    for epoch, line in enumerate(lines[:2], start=1):
        assert re.fullmatch(rf"Epoch {epoch}/2 - 1/1 steps - \d+s( - \w+: -?[\d.e+-]+)+",
                            line), line
        assert " - g_total: " in line and " - d_total: " in line
    assert lines[2] == (f"spade-train: step 2 of 2 (started at 0); model folder "
                        f"{recovered_run['model_dir']}")


def _images(version_dir, scene) -> np.ndarray:
    labels = np.asarray(Image.open(scene), np.int32)[None]
    instances = np.asarray(Image.open(scene.parent.parent / "instances" / scene.name),
                           np.int32)[None]
    served = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return served(label_ids=tf.constant(labels),
                  instance_ids=tf.constant(instances))["image"].numpy()


def test_a_damaged_generator_of_a_finished_run_comes_back(recovered_run):
    seen = recovered_run
    assert seen["trained"].returncode == 0, seen["trained"].stderr[-3000:]
    model_dir, generator = seen["model_dir"], seen["model_dir"] / "generator.keras"
    # Without --checkpoint: what is wrong (not Keras's "File not found") and what to run.
    line = assert_one_line_error(seen["export_damaged"], "spade-export")
    assert line == (f"spade-export: error: {generator} is damaged or incomplete (truncated: "
                    "not a complete zip archive); write it again: run the same spade-train "
                    "command (it rewrites it from the last checkpoint, step 2), or use that "
                    "checkpoint directly with --checkpoint latest (spade-export, "
                    "spade-synthesize)."), line
    # With --checkpoint the networks are built from config.yaml: the file is not needed.
    for name in ("export_checkpoint", "synthesize_checkpoint"):
        assert seen[name].returncode == 0, (name, seen[name].stderr[-3000:])
    # The same spade-train command on the finished run rewrites the file, in one line.
    retrained = seen["retrained"]
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    assert (retrained.stdout + retrained.stderr).strip().splitlines() == [
        f"spade-train: {model_dir} is finished (step 2 of 2); rewrote generator.keras "
        "(truncated: not a complete zip archive) from its last checkpoint; raise "
        "train.epochs to train longer."]
    assert not (model_dir / ".networks.tmp").exists()
    assert seen["export_rewritten"].returncode == 0, seen["export_rewritten"].stderr[-3000:]
    # Once sound, the same command has nothing to do.
    assert seen["again"].stdout.strip().endswith("nothing to do; raise train.epochs to train "
                                                 "longer."), seen["again"].stdout
    # The rewritten file serves what the checkpoint serves, bit for bit; spade-synthesize
    # from the checkpoint draws the same image (its own graph: within one grey level).
    exports, scene = seen["exports"] / "spade", seen["scene"]
    from_checkpoint = _images(exports / "1", scene)
    np.testing.assert_array_equal(_images(exports / "2", scene), from_checkpoint)
    synthesized = np.asarray(Image.open(seen["synthesized"]).convert("RGB"), np.int16)
    assert np.abs(synthesized - from_checkpoint[0].astype(np.int16)).max() <= 1
