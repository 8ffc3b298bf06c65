"""``spade-synthesize`` mistakes: one readable line, exit 2, and no --out written."""

import socket

import numpy as np
import pytest
from PIL import Image
from support.processes import assert_one_line_error, run_command, run_commands

from serving.server import SpadeServer
from spade_cli.synthesize import main
from spade_tf.config import ModelConfig

# Instance edges, no VAE: --instance is needed, --seed and --style are not accepted.
MODEL = ModelConfig(num_classes=4, use_instance_edges=True, crop_size=32, base_filters=4,
                    spade_hidden_filters=8)
# What TensorFlow adds to the messages of its in-graph checks.
INTERNALS = ("{{", "[[", "[Op:", "Condition x", "strided_slice", "assertion failed")


@pytest.fixture(scope="module")
def server(exports):
    export = exports("instances_32")  # MODEL
    assert export.model == MODEL
    server = SpadeServer(export.base, export.name, port=0, poll_seconds=0)
    server.start()
    yield server
    server.stop(grace=1.0).wait(10)


def _png(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return path


@pytest.fixture
def maps(tmp_path):
    return {"label": _png(tmp_path / "label.png", np.zeros((32, 32))),
            "instance": _png(tmp_path / "instance.png", np.zeros((32, 32)))}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_map_and_photo_mistakes_are_named_before_any_call(tmp_path, maps):
    down = f"127.0.0.1:{_free_port()}"  # nothing is asked of it: the files fail first
    out = tmp_path / "out.png"
    jpeg = tmp_path / "label.jpg"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(jpeg)
    colour = _png(tmp_path / "colour.png", np.full((32, 32, 3), [200, 30, 30]))
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # a PNG header, then nothing
    # All three at once: their start-ups overlap.
    lossy, rendering, unreadable = run_commands(
        ("spade-synthesize", "--server", down, "--label", jpeg, "--out", out),
        ("spade-synthesize", "--server", down, "--label", colour, "--out", out),
        ("spade-synthesize", "--server", down, "--label", maps["label"], "--instance",
         maps["instance"], "--style", photo, "--out", out))
    assert_one_line_error(lossy, "spade-synthesize", f"the label map {jpeg} is a JPEG file: "
                          "lossy compression changes ids at region edges", "--allow-lossy")
    assert_one_line_error(rendering, "spade-synthesize",
                          f"the label map {colour} is an RGB image",
                          "it looks like a colour rendering of the classes")
    assert_one_line_error(unreadable, "spade-synthesize", f"the style photo {photo} cannot be "
                          "read as an image")
    assert not out.exists()


def test_argument_mistakes_are_found_before_the_call(tmp_path, maps, capsys):
    _png(tmp_path / "small.png", np.zeros((8, 16)))
    down = f"127.0.0.1:{_free_port()}"
    common = ["--server", down, "--label", str(maps["label"])]
    for arguments, words in [
        (["--style", str(tmp_path / "none.jpg"), "--out", str(tmp_path / "o.png")],
         f"the style photo {tmp_path / 'none.jpg'} does not exist."),
        (["--out", str(tmp_path)], f"--out {tmp_path} is a folder: give the image file"),
        (["--out", str(tmp_path / "out.xyz")], "unknown image type '.xyz'"),
        (["--out", str(maps["label"] / "out.png")], f"{maps['label']} is a file, not a folder"),
        (["--instance", str(tmp_path / "small.png"), "--out", str(tmp_path / "o.png")],
         f"the instance map {tmp_path / 'small.png'} is 16x8 but the label map "
         f"{maps['label']} is 32x32: they must match."),
        (["--server", "localhost", "--out", str(tmp_path / "o.png")],
         "--server localhost: expected HOST:PORT"),
        (["--precision", "bfloat16", "--out", str(tmp_path / "o.png")],
         "--precision picks how a model folder's generator is stored and run: it goes "
         "with --model-dir"),
    ]:
        assert main([*common, *arguments]) == 2
        error = capsys.readouterr().err
        assert error.startswith("spade-synthesize: error: ") and words in error, error
        assert error.count("\n") == 1, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instance.png", "label.png",
                                                          "small.png"]


def test_no_server_fails_fast_with_one_line(tmp_path, maps):
    down = f"127.0.0.1:{_free_port()}"
    result = run_command("spade-synthesize", "--server", down, "--label", maps["label"],
                         "--instance", maps["instance"], "--timeout", "2",
                         "--out", tmp_path / "out.png", timeout=60)
    assert_one_line_error(result, "spade-synthesize", f"no server answers at {down} "
                          "(UNAVAILABLE:", "start one (spade-serve --model-base-path")
    assert not (tmp_path / "out.png").exists()


def test_maps_the_model_cannot_take_are_refused_readably(tmp_path, maps, server, capsys):
    """Checked against the served model's description before any image is asked for."""
    small = _png(tmp_path / "small.png", np.zeros((16, 32)))
    result = run_command("spade-synthesize", "--server", server.address, "--label", small,
                         "--instance", small, "--out", tmp_path / "out.png")
    line = assert_one_line_error(
        result, "spade-synthesize", f"the label map {small} is 32x16 but this model makes "
        "32x32 images: add --resize (nearest neighbour, ids kept)")
    assert not [part for part in INTERNALS if part in result.stderr], line

    common = ["--server", server.address, "--out", str(tmp_path / "out.png")]
    bad_ids = _png(tmp_path / "ids.png", np.full((32, 32), 9))
    for arguments, words in [
        (["--label", str(bad_ids), "--instance", str(maps["instance"])],
         f"{bad_ids} has label id 9 (1024 pixels): this model's ids are 0..3."),
        (["--label", str(maps["label"])], "this model uses instance maps "
         "(model.use_instance_edges): give --instances"),
        (["--label", str(maps["label"]), "--instance", str(maps["instance"]), "--seed", "3"],
         "this model has no style encoder (model.use_vae is false), so drop them"),
    ]:
        assert main([*common, *arguments]) == 2
        error = capsys.readouterr().err
        assert error.startswith("spade-synthesize: error: ") and words in error, error
        assert not [part for part in INTERNALS if part in error], error
    assert not (tmp_path / "out.png").exists()


def test_the_same_command_twice_refuses_then_overwrite_replaces_the_image_whole(
        tmp_path, maps, server, capsys):
    out = tmp_path / "images" / "out.png"
    arguments = ["--server", server.address, "--label", str(maps["label"]), "--instance",
                 str(maps["instance"]), "--out", str(out)]
    assert main(arguments) == 0
    first = np.asarray(Image.open(out))
    assert capsys.readouterr().out == f"wrote {out} (32x32)\n"
    assert main(arguments) == 2  # the user's file, or the last run's: kept
    assert capsys.readouterr().err == (f"spade-synthesize: error: --out {out} exists: add "
                                       "--overwrite to replace it, or name another file.\n")
    out.write_bytes(b"older")
    assert main([*arguments, "--overwrite"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), first)  # no VAE: deterministic
    assert [p.name for p in out.parent.iterdir()] == ["out.png"]  # no temporary file left
    assert capsys.readouterr().out == f"wrote {out} (32x32)\n"
