"""``spade-synthesize`` never replaces a file nobody asked it to replace, and its pictures
show every map at its own aspect ratio."""

import re
import socket

import numpy as np
import pytest
from PIL import Image
from support.models import save_random_model
from support.processes import assert_one_line_error, run_commands

from spade_tf.classes import class_table
from spade_tf.config import ModelConfig

MODEL = ModelConfig(num_classes=8, crop_size=32, base_filters=4, spade_hidden_filters=8,
                    classes="synthetic")
ROW = 192  # the contact sheet's row height (spade_tf.visualize)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("outputs") / "model", MODEL, seed=5)


def _down() -> str:
    """A server address nobody answers at: a refusal that names it came before any call."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def _foreign_png(path):
    Image.fromarray(np.full((5, 7, 3), 9, np.uint8)).save(path)  # a picture of the user's
    return path.read_bytes()


def _cells(page: str) -> dict[str, tuple[int, int]]:
    """src -> (width, height) of every picture on an index page."""
    return {src: (int(width), int(height)) for src, width, height in
            re.findall(r'<img src="([^"]+)"[^>]* width="(\d+)" height="(\d+)"', page)}


def test_one_map_refuses_to_replace_files_unless_overwrite(model_dir, tmp_path):
    label = tmp_path / "label.png"
    Image.fromarray(np.kron(np.arange(4).reshape(2, 2), np.ones((16, 16))).astype(np.uint8)
                    ).save(label)
    mine = _foreign_png(tmp_path / "keep.png")
    (tmp_path / "index.html").write_text("<p>my notes</p>")
    sheet_of_mine = _foreign_png(tmp_path / "sheet.png")
    out = tmp_path / "out"
    down = _down()
    command = ("spade-synthesize", "--model-dir", model_dir, "--labels", label)
    keep, page, grid, first = run_commands(
        ("spade-synthesize", "--server", down, "--labels", label, "--out", tmp_path / "keep.png"),
        ("spade-synthesize", "--server", down, "--labels", label, "--out", tmp_path / "new.png",
         "--html"),
        ("spade-synthesize", "--server", down, "--labels", label, "--out", out / "one.png",
         "--grid", tmp_path / "sheet.png"),
        (*command, "--out", out / "one.png", "--html", "--grid", out / "sheet.png"))
    assert_one_line_error(keep, "spade-synthesize", f"--out {tmp_path / 'keep.png'} exists: add "
                          "--overwrite to replace it, or name another file.")
    assert_one_line_error(page, "spade-synthesize", f"--html: {tmp_path / 'index.html'} exists "
                          "and spade-synthesize did not write it: move it away or give another "
                          "--out, or add --overwrite to replace it.")
    assert_one_line_error(grid, "spade-synthesize", f"--grid: {tmp_path / 'sheet.png'} exists "
                          "and spade-synthesize did not write it: move it away or name another "
                          "file, or add --overwrite")
    assert (tmp_path / "keep.png").read_bytes() == mine
    assert (tmp_path / "index.html").read_text() == "<p>my notes</p>"
    assert (tmp_path / "sheet.png").read_bytes() == sheet_of_mine
    assert not (tmp_path / "new.png").exists()
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == f"wrote {out / 'one.png'} (32x32)"
    image = (out / "one.png").read_bytes()

    again, second, replaced = run_commands(
        (*command, "--out", out / "one.png", "--html", "--grid", out / "sheet.png"),
        # Another map name in the same folder: the tool's own page and sheet are rewritten.
        (*command, "--out", out / "two.png", "--html", "--grid", out / "sheet.png"),
        (*command, "--out", tmp_path / "keep.png", "--html", "--overwrite"))
    assert_one_line_error(again, "spade-synthesize", f"--out {out / 'one.png'} exists: add "
                          "--overwrite to replace it")
    assert (out / "one.png").read_bytes() == image
    assert second.returncode == 0, second.stderr
    assert f"wrote index page {out / 'index.html'}" in second.stdout
    assert f"wrote contact sheet {out / 'sheet.png'}" in second.stdout
    assert list(_cells((out / "index.html").read_text())) == ["index_files/two.label.png",
                                                              "two.png"]
    assert replaced.returncode == 0, replaced.stderr
    assert Image.open(tmp_path / "keep.png").size == (32, 32)
    assert '<meta name="generator" content="spade-synthesize">' in \
        (tmp_path / "index.html").read_text()
    assert not [path for path in tmp_path.rglob(".*")]  # no temporary file left


def test_folders_keep_images_rewrite_own_pictures_and_show_aspect_ratios(model_dir, tmp_path):
    (tmp_path / "maps").mkdir()
    square = np.kron(np.array([[0, 1], [2, 3]]), np.ones((16, 16))).astype(np.uint8)
    wide = np.zeros((48, 96), np.uint8)  # 96 wide, 48 high: not the model's square
    wide[:, 48:] = 3
    wide[:24, :24] = 1
    Image.fromarray(square).save(tmp_path / "maps" / "square.png")
    Image.fromarray(wide).save(tmp_path / "maps" / "wide.png")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "index.html").write_text("<p>my gallery</p>")
    grid_of_mine = _foreign_png(tmp_path / "mine.png")
    out, grid = tmp_path / "out", tmp_path / "grid.png"
    common = ("--labels", tmp_path / "maps", "--resize", "back")
    command = ("spade-synthesize", "--model-dir", model_dir, *common)
    page_refused, grid_refused, first = run_commands(
        ("spade-synthesize", "--server", _down(), *common, "--out", foreign, "--html"),
        ("spade-synthesize", "--server", _down(), *common, "--out", out, "--grid",
         tmp_path / "mine.png"),
        (*command, "--out", out, "--grid", grid, "--html"))
    assert_one_line_error(page_refused, "spade-synthesize", f"--html: {foreign / 'index.html'} "
                          "exists and spade-synthesize did not write it", "add --overwrite to "
                          f"replace it (--overwrite also replaces the existing images in "
                          f"{foreign})")
    assert_one_line_error(grid_refused, "spade-synthesize", f"--grid: {tmp_path / 'mine.png'} "
                          "exists and spade-synthesize did not write it")
    assert (foreign / "index.html").read_text() == "<p>my gallery</p>"
    assert (tmp_path / "mine.png").read_bytes() == grid_of_mine
    assert first.returncode == 0, first.stderr
    assert Image.open(out / "wide.png").size == (96, 48)
    # The contact sheet: each map at its own aspect ratio, beside its image.
    sheet = np.asarray(Image.open(grid))
    assert sheet.shape == (2 * ROW + 4, 2 * 2 * ROW + 4, 3)  # square row, then wide row
    palette = class_table("synthetic", 8).palette
    np.testing.assert_array_equal(sheet[:ROW, :ROW][::6, ::6], palette[square])
    np.testing.assert_array_equal(sheet[ROW + 4:, :2 * ROW][::4, ::4], palette[wide])
    np.testing.assert_array_equal(sheet[:ROW, 2 * ROW + 4:], 255)  # the square row is short
    # The page: every picture 256 high, as wide as its aspect ratio makes it.
    page = (out / "index.html").read_text()
    assert _cells(page) == {"index_files/square.label.png": (256, 256), "square.png": (256, 256),
                            "index_files/wide.label.png": (512, 256), "wide.png": (512, 256)}
    assert Image.open(out / "index_files" / "wide.label.png").size == (96, 48)

    images = {name: (out / name).read_bytes() for name in ("square.png", "wide.png")}
    (out / "index.html").write_text(page.replace("</body>", "<p>stale</p></body>"))
    Image.fromarray(sheet[:8, :8]).save(grid, pnginfo=_marked())  # an older sheet of ours
    again, overwritten = run_commands(
        (*command, "--out", out, "--grid", grid, "--html"),
        (*command, "--out", foreign, "--html", "--overwrite"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"wrote 0 images to {out}", "kept 2 existing images (--overwrite replaces them)",
        f"wrote contact sheet {grid} (label | image)", f"wrote index page {out / 'index.html'}"]
    assert {name: (out / name).read_bytes() for name in images} == images
    assert "stale" not in (out / "index.html").read_text()  # the tool's own page: rewritten
    assert "(2 kept from before)" in (out / "index.html").read_text()
    np.testing.assert_array_equal(np.asarray(Image.open(grid)), sheet)
    assert overwritten.returncode == 0, overwritten.stderr
    assert "my gallery" not in (foreign / "index.html").read_text()
    assert sorted(_cells((foreign / "index.html").read_text())) == [
        "index_files/square.label.png", "index_files/wide.label.png", "square.png", "wide.png"]


def _marked():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "spade-synthesize")
    return info
