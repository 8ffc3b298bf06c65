"""``spade-synthesize`` over folders: three back ends, one image per map, pictures to look at."""

import numpy as np
import pytest
from PIL import Image
from support.processes import assert_one_line_error, run_command, run_commands

from serving.server import SpadeServer
from spade_cli.synthesize import main
from spade_tf.classes import class_table
from spade_tf.config import ModelConfig

VAE = ModelConfig(num_classes=8, use_instance_edges=True, crop_size=32, base_filters=4,
                  spade_hidden_filters=8, use_vae=True, latent_dim=8, encoder_filters=4,
                  encoder_input_size=128, classes="synthetic")


@pytest.fixture(scope="module")
def model(exports):
    export = exports("vae_32_synthetic")  # VAE
    assert export.model == VAE
    server = SpadeServer(export.base, export.name, port=0, poll_seconds=0)
    server.start()
    yield {"model_dir": export.model_dir, "export": export.version_dir,
           "server": server.address}
    server.stop(grace=1.0).wait(10)


@pytest.fixture
def maps(tmp_path):
    rng = np.random.default_rng(4)
    for folder in ("labels/city", "instances/city"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("a", "b", "city/c"):
        ids = np.kron(rng.integers(0, 8, (4, 4)), np.ones((8, 8), np.int64))
        Image.fromarray(ids.astype(np.uint8)).save(tmp_path / "labels" / f"{name}.png")
        Image.fromarray(ids.astype(np.uint8)).save(tmp_path / "instances" / f"{name}.png")
    return tmp_path


def _images(folder):
    return {path.relative_to(folder).as_posix(): np.asarray(Image.open(path))
            for path in sorted(folder.rglob("*.png")) if "index_files" not in path.parts}


def test_three_back_ends_give_the_same_images(model, maps, capsys):
    outputs = {}
    for source in ("model_dir", "export", "server"):
        out = maps / f"out_{source}"
        assert main([f"--{source.replace('_', '-')}", str(model[source]),
                     "--labels", str(maps / "labels"), "--instances", str(maps / "instances"),
                     "--seed", "11", "--out", str(out), "--batch-size", "2"]) == 0
        assert f"wrote 3 images to {out}" in capsys.readouterr().out
        outputs[source] = _images(out)
    assert sorted(outputs["export"]) == ["a.png", "b.png", "city/c.png"]
    for name, image in outputs["export"].items():
        assert image.shape == (32, 32, 3)
        np.testing.assert_array_equal(outputs["server"][name], image)  # the same graph
        assert np.abs(outputs["model_dir"][name].astype(int) - image).max() <= 1
    # A style photo: the same image in process and over gRPC, and not the seeded one.
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), np.uint8)).save(
        maps / "photo.png")
    for source in ("export", "server"):
        assert main([f"--{source}", str(model[source]), "--labels", str(maps / "labels"),
                     "--instances", str(maps / "instances"), "--style", str(maps / "photo.png"),
                     "--out", str(maps / f"styled_{source}")]) == 0
    styled = _images(maps / "styled_export")
    assert {name: image.tolist() for name, image in styled.items()} == \
        {name: image.tolist() for name, image in _images(maps / "styled_server").items()}
    assert not np.array_equal(styled["a.png"], outputs["export"]["a.png"])


def test_existing_images_are_kept_resize_keeps_ids_and_pictures(model, maps, capsys):
    out = maps / "out"
    (out / "city").mkdir(parents=True)
    (out / "city" / "c.png").write_bytes(b"mine")
    wide = np.zeros((20, 60), np.uint8)
    wide[:, 30:] = 6
    Image.fromarray(wide).save(maps / "labels" / "wide.png")
    Image.fromarray(wide).save(maps / "instances" / "wide.png")
    arguments = ["--export", str(model["export"]), "--labels", str(maps / "labels"),
                 "--instances", str(maps / "instances"), "--seed", "2", "--out", str(out)]
    assert main(arguments) == 2
    assert "is 60x20 but this model makes 32x32 images: add --resize" in capsys.readouterr().err
    assert main([*arguments, "--resize", "back", "--grid", str(maps / "grid.png"),
                 "--html"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 3 images" in printed and "kept 1 existing image" in printed
    assert (out / "city" / "c.png").read_bytes() == b"mine"
    assert Image.open(out / "wide.png").size == (60, 20)  # back at the map's size
    # The contact sheet: the label maps in the classes' colours, then the images.
    sheet = np.asarray(Image.open(maps / "grid.png"))
    palette = class_table("synthetic", 8).palette
    assert sheet.shape[0] == 3 * 192 + 2 * 4  # a, b, wide (c is kept, and not an image)
    left = sheet[:192, :192]
    labels_a = np.asarray(Image.open(maps / "labels" / "a.png"))
    np.testing.assert_array_equal(left[::6, ::6], palette[labels_a])
    page = (out / "index.html").read_text()
    assert 'src="index_files/a.label.png"' in page and 'src="wide.png"' in page
    assert 'src="city/c.png"' not in page  # the kept file is not an image: left out
    wide_labels = np.asarray(Image.open(out / "index_files" / "wide.label.png"))
    assert wide_labels.shape == (20, 60, 3)  # the map as given, at its own size
    assert {tuple(c) for c in wide_labels.reshape(-1, 3)} == {tuple(palette[0]),
                                                             tuple(palette[6])}
    assert not [path for path in out.rglob(".*")]  # no temporary file left
    assert main([*arguments, "--resize", "model", "--overwrite"]) == 0
    assert Image.open(out / "city" / "c.png").size == (32, 32)
    assert Image.open(out / "wide.png").size == (32, 32)


def test_bad_maps_stop_the_run_or_are_skipped_and_listed(model, maps, capsys):
    Image.fromarray(np.full((32, 32), 30, np.uint8)).save(maps / "labels" / "b.png")
    arguments = ["--model-dir", str(model["model_dir"]), "--labels", str(maps / "labels"),
                 "--instances", str(maps / "instances"), "--out", str(maps / "out")]
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{maps / 'labels' / 'b.png'} has label id 30" in error
    assert not (maps / "out").exists()
    assert main([*arguments, "--skip-bad"]) == 1
    captured = capsys.readouterr()
    assert "wrote 2 images" in captured.out
    assert captured.err.strip().endswith("skipped 1 unusable map (listed above)")
    assert sorted(_images(maps / "out")) == ["a.png", "city/c.png"]


def test_a_user_runs_it_from_the_command_line(model, maps, tmp_path):
    # All three at once (their start-ups overlap); the mistakes write to --out folders of
    # their own, so they cannot see the run that writes.
    no_instances, not_a_version, result = run_commands(
        ("spade-synthesize", "--export", model["export"], "--labels", maps / "labels",
         "--out", maps / "out_no_instances"),
        ("spade-synthesize", "--export", model["export"].parent, "--labels", maps / "labels",
         "--instances", maps / "instances", "--out", maps / "out_not_a_version"),
        ("spade-synthesize", "--export", model["export"], "--labels", maps / "labels",
         "--instances", maps / "instances", "--seed", "1", "--out", maps / "out"))
    assert_one_line_error(no_instances, "spade-synthesize", "this model uses instance maps "
                          "(model.use_instance_edges): give --instances")
    assert_one_line_error(not_a_version, "spade-synthesize",
                          "is not a spade-export version folder", f"give e.g. {model['export']}")
    assert not (maps / "out_no_instances").exists()
    assert not (maps / "out_not_a_version").exists()
    assert result.returncode == 0, result.stderr
    assert "synthesized 3/3" in result.stderr and "images/s" in result.stderr
    assert result.stdout.startswith(f"wrote 3 images to {maps / 'out'}")
    again = run_command("spade-synthesize", "--export", model["export"], "--labels",
                        maps / "labels", "--instances", maps / "instances", "--seed", "1",
                        "--out", maps / "out")
    assert again.returncode == 0 and "kept 3 existing images" in again.stdout
