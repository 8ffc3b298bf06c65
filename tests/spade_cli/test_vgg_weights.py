"""spade-train's VGG term with the weights a Keras user has (issue 24, item 11): Keras's
downloaded file trains; without a file, one line names both files, where each usually is,
which one reproduces the reference, and the one this machine has."""

import sys
import textwrap

from support import ROOT
from support.processes import assert_one_line_error, command_args, command_env
from support.runs import session_run
from support.synthetic_data import write_training_records

from spade_tf.training.vgg import KERAS_FILE

CONFIG = ROOT / "configs" / "demo.yaml"
WRITE_WEIGHTS = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from support.vgg_weights import write_random_download_file
    write_random_download_file(Path(sys.argv[1]))
""").format(tests=str(ROOT / "tests"))


@session_run
def vgg_training(folder, processes):
    """A fake Keras download in a Keras cache (KERAS_HOME), then spade-train with the VGG
    term on: once without train.vgg_weights_path, once with the file."""
    records = write_training_records(folder / "scenes", folder / "records")
    weights = folder / "keras" / "models" / KERAS_FILE
    # Keras builds the network in a process of its own: this one stays free of Keras state.
    written = processes.run([sys.executable, "-c", WRITE_WEIGHTS, str(weights)], 300,
                            env=command_env(), cwd=ROOT)
    assert written.returncode == 0, written.stderr[-3000:]
    env = command_env(KERAS_HOME=str(folder / "keras"), TORCH_HOME=str(folder / "torch"))

    def train(model_dir, *settings):
        return processes.start(command_args(
            "spade-train", "--config", CONFIG, "--data", records, "--model-dir", model_dir,
            "--verbose", "2", "--set", "train.epochs=1", "--set", "train.decay_epochs=0",
            "--set", "train.vgg_weight=10", *settings), env=env, cwd=ROOT)

    missing = train(folder / "missing")
    trained = train(folder / "trained", "--set", f"train.vgg_weights_path={weights}")
    return {"weights": weights, "missing_dir": folder / "missing",
            "missing": processes.finish(missing, 600), "trained": processes.finish(trained, 900)}


def test_without_a_file_the_line_names_both_and_the_one_found(vgg_training):
    line = assert_one_line_error(
        vgg_training["missing"], "spade-train",
        "train.vgg_weights_path is not set. This machine has " + str(vgg_training["weights"]),
        "torchvision's vgg19-dcbb9e9d.pth reproduces the reference (usually in "
        "~/.cache/torch/hub/checkpoints/",
        f"Keras's {KERAS_FILE} (usually in ~/.keras/models/",
        "also works but does not reproduce it", "--set train.vgg_weight=0")
    assert line.startswith("spade-train: error: the VGG perceptual loss needs VGG19")
    assert not (vgg_training["missing_dir"] / "checkpoints").exists()


def test_kerass_downloaded_file_trains(vgg_training):
    result = vgg_training["trained"]
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    vgg_loss = float(output.split("g_vgg: ")[1].split()[0])
    assert vgg_loss > 0, output[-2000:]
