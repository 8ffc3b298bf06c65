"""``spade-tfrecords`` as a user drives it: mistakes end in one line, nothing is lost."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from support.processes import (
    assert_one_line_error,
    command_env,
    run_command,
    run_commands,
)
from support.synthetic_data import make_synthetic_records

from spade_cli.tfrecords import main
from spade_tf.data import read_manifest
from tfrecords_tools import synthetic
from tfrecords_tools.inspect import inspect_dataset

PROG = "spade-tfrecords convert"


def _scenes(folder: Path, num: int = 12, seed: int = 0) -> Path:
    return synthetic.write_dataset(folder, num, size=32, seed=seed)


def _folders_args(data: Path, out: Path, *extra) -> list[str]:
    return ["convert", "--dataset", "folders", "--images", str(data / "images"), "--labels",
            str(data / "labels"), "--instances", str(data / "instances"), "--num-classes",
            str(synthetic.NUM_CLASSES), "--out", str(out), *map(str, extra)]


def _snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) -> (bytes, mtime)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_different_conversion_is_refused_then_replaced_whole_with_overwrite(tmp_path,
                                                                              capsys):
    first = _scenes(tmp_path / "first", 12)
    other = _scenes(tmp_path / "other", 8, seed=1)
    big_rec = make_synthetic_records(first, tmp_path / "big_rec", num_shards=3)
    before = _snapshot(big_rec)

    # Issue case 1: other data into a folder holding a finished conversion.
    result = run_command("spade-tfrecords", *_folders_args(other, big_rec))
    line = assert_one_line_error(
        result, PROG, f"--out {big_rec} already holds a finished conversion of folders train "
        "(12 examples in 3 shards), made from other data or options: pick another --out, or "
        "add --overwrite to replace it")
    assert "checked pairs" not in result.stderr  # refused before any work
    assert _snapshot(big_rec) == before, line

    result = run_command("spade-tfrecords", *_folders_args(other, big_rec, "--overwrite"))
    assert result.returncode == 0, result.stderr
    assert "replacing a finished conversion of folders train (12 examples in 3 shards)" \
        in result.stderr
    assert read_manifest(big_rec).num_examples == 8
    _, report = inspect_dataset(big_rec)
    assert report.problems == [] and report.num_examples == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big_rec", "first", "other"]

    # The same command twice (in process, to save a start-up): nothing redone or touched.
    after = _snapshot(big_rec)
    assert main(_folders_args(other, big_rec)) == 0
    err = capsys.readouterr().err
    assert f"{big_rec} already holds this conversion (8 examples in 1 shard); nothing to do" \
        in err
    assert "checked pairs" not in err
    assert _snapshot(big_rec) == after


def _many_pairs(source: Path, target: Path, copies: int) -> Path:
    """``copies`` pairs made of hard links to a few scenes: many quick examples."""
    for kind in synthetic.SUBDIRS:
        (target / kind).mkdir(parents=True)
        scenes = sorted((source / kind).glob("*.png"))
        for index in range(copies):
            os.link(scenes[index % len(scenes)], target / kind / f"copy_{index:04d}.png")
    return target


def _default_sigint() -> None:
    # A suite started in the background (`make test &`, nohup) runs with SIGINT ignored, and
    # an ignored SIGINT is inherited: Python would then never raise KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_in_own_group(*args) -> subprocess.Popen:
    # Its own process group, so SIGINT reaches the workers too, as Ctrl-C in a terminal does.
    return subprocess.Popen([sys.executable, "-m", "spade_cli.tfrecords", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=command_env(), stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_default_sigint)


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path):
    data = _many_pairs(_scenes(tmp_path / "scenes", 6), tmp_path / "data", 600)
    out = tmp_path / "records"
    args = _folders_args(data, out, "--num-shards", 60, "--workers", 2)
    process = _start_in_own_group(*args)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.tfrecord")) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    result = subprocess.CompletedProcess(args, process.returncode, "", stderr)
    line = assert_one_line_error(result, PROG, "; run the same command to resume (finished "
                                 "shards are kept)", status=130)
    done = int(line.split("interrupted after ")[1].split(" of 60 shards")[0])
    assert 1 <= done < 60, line
    # Only whole shards, named as finished ones; no manifest, no half-written file.
    names = sorted(p.name for p in out.iterdir())
    assert names == [".convert-state.json"] + [
        f"train-{index:05d}-of-00060.tfrecord" for index in range(done)], names
    first = out / "train-00000-of-00060.tfrecord"
    first_written = first.stat().st_mtime_ns

    result = run_command("spade-tfrecords", *args)
    assert result.returncode == 0, result.stderr
    assert f"{done} finished shard" in result.stderr
    assert "wrote 600 examples in 60 shards" in result.stderr
    assert first.stat().st_mtime_ns == first_written  # kept, not written again
    _, report = inspect_dataset(out)
    assert report.problems == [] and report.num_examples == 600


def test_unusable_maps_are_named_as_files_with_the_reason(tmp_path):
    # Issue case 14: a JPEG label map and an undecodable photo among good pairs.
    data = _scenes(tmp_path / "data")
    label = np.asarray(Image.open(data / "labels" / "scene_00003.png"))
    (data / "labels" / "scene_00003.png").unlink()
    Image.fromarray(label).save(data / "labels" / "scene_00003.jpg", quality=95)
    (data / "images" / "scene_00005.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"

    result = run_command("spade-tfrecords", *_folders_args(data, out))
    assert_one_line_error(result, PROG, "2 of 12 pairs are unusable (listed above). Fix them, "
                          "or rerun with --skip-bad to leave them out")
    assert (f"  - the label map {data / 'labels' / 'scene_00003.jpg'} is a JPEG file: lossy "
            "compression changes ids at region edges; save the label maps as PNG") \
        in result.stderr
    assert (f"  - {data / 'images' / 'scene_00005.png'} cannot be decoded: it is not a PNG "
            "or JPEG image") in result.stderr
    assert "BytesIO" not in result.stderr and "no label map" not in result.stderr
    assert not out.exists()


def test_hints_name_only_the_options_of_the_mode(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    assert main(["convert", "--dataset", "folders", "--images", str(tmp_path / "img"),
                 "--labels", str(tmp_path / "lab"), "--num-classes", "3", "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no folders examples found in {tmp_path / 'img'}: check --images (photos as .jpg " \
           "or .png) and --labels (label maps as .png, with the same file names)." in err
    assert "--root" not in err and "--split" not in err


def _convert_error(capsys, *args) -> str:
    """Run ``spade-tfrecords`` in process; its exit status must be 2; the last stderr line."""
    try:
        status = main(list(map(str, args)))
    except SystemExit as exited:  # argparse
        status = exited.code
    assert status == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_ordinary_mistakes_end_in_one_line(tmp_path, capsys):
    data = _scenes(tmp_path / "data")
    dataset_file = data / "classes.json"
    out = tmp_path / "out"
    cases = [
        (["convert", "--dataset", "cityscapes", "--out", out],
         "--dataset cityscapes needs --root, the folder that holds the dataset."),
        (["convert", "--dataset", "ade20k", "--root", dataset_file, "--out", out],
         f"--root {dataset_file} is a file; expected the ADE20K"),
        (["convert", "--dataset", "cityscapes", "--root", data, "--out", out],
         f"Cityscapes image folder {data}/leftImg8bit/train does not exist: --root should "
         "hold leftImg8bit/ and gtFine/."),
        (["convert", "--dataset", "coco_stuff", "--root", data, "--num-classes", 3, "--out",
          out], "--dataset coco_stuff does not use --num-classes (it takes --root, "
                "--no-instances, --split and --out)."),
        (_folders_args(data, data / "images" / "records"),
         f"--out {data / 'images' / 'records'} is inside the dataset folder"),
        (_folders_args(data, data),
         f"--out {data} is or holds the dataset folder {data / 'images'}"),
        (_folders_args(data, dataset_file), f"--out {dataset_file} is a file"),
        (_folders_args(data, out, "--num-shards", 0),
         "argument --num-shards: expected at least 1 shard, got 0"),
        (_folders_args(data, out, "--num-shards", -1),
         "argument --num-shards: expected at least 1 shard, got -1"),
        (_folders_args(data, out, "--workers", -2),
         "argument --workers: expected at least 1 worker, got -2"),
        ([*_folders_args(data, out)[:3], "--images", dataset_file, *_folders_args(data, out)[5:]],
         f"--images folder {dataset_file} is a file, not a folder."),
        (["inspect", data], f"{data} is not a converted dataset (no manifest.json)"),
        (["inspect", tmp_path / "nowhere"], "does not exist: give the --out folder of "
                                            "spade-tfrecords convert."),
        (["synthetic", "--out", data / "images", "--num", 3],
         "--out must be new, empty or an earlier synthetic dataset"),
        (["synthetic", "--out", tmp_path / "more", "--num", 0],
         "--num 0: expected a positive number of scenes."),
    ]
    for args, words in cases:
        line = _convert_error(capsys, *args)
        assert line.startswith("spade-tfrecords "), line
        assert words in line, (words, line)
    assert not out.exists() and not (tmp_path / "more").exists()
    assert sorted(p.name for p in data.iterdir()) == sorted(["classes.json", *synthetic.SUBDIRS])


def test_inspect_counts_problems_in_words(tmp_path, capsys):
    data = _scenes(tmp_path / "data")
    records = make_synthetic_records(data, tmp_path / "records", num_shards=2)
    shard = sorted(records.glob("*.tfrecord"))[1]
    shard.write_bytes(shard.read_bytes()[:50])
    assert main(["inspect", str(records)]) == 1
    out = capsys.readouterr().out
    # Truncated: the wrong size, corrupt on reading, and too few records.
    assert "schema check: 3 problems" in out and "has 50 bytes" in out
    shard.unlink()
    assert main(["inspect", str(records)]) == 1
    out = capsys.readouterr().out
    assert "schema check: 1 problem\n" in out and "is missing" in out

    # An interrupted conversion is not inspected: it says how to finish it.
    (records / "manifest.json").unlink()
    assert main(["inspect", str(records)]) == 2
    assert "holds an unfinished conversion (1 shard written, no manifest.json yet): run the " \
           "same spade-tfrecords convert command again" in capsys.readouterr().err


def test_inspect_names_damaged_records_without_tensorflow_internals(tmp_path):
    records = make_synthetic_records(_scenes(tmp_path / "data"), tmp_path / "records",
                                     num_shards=2)
    first, second = sorted(records.glob("*.tfrecord"))
    # A flipped byte inside the first record (the file keeps its size), and a shard cut
    # inside its first record.
    damaged = bytearray(first.read_bytes())
    damaged[200] ^= 0xFF
    first.write_bytes(bytes(damaged))
    second.write_bytes(second.read_bytes()[:50])
    result = run_command("spade-tfrecords", "inspect", records)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"  - shard {first} is corrupt after 0 records (corrupted record at byte 12)\n" \
        in result.stdout, result.stdout
    assert f"  - shard {second} is corrupt after 0 records (truncated record at byte 0: the " \
           "file ends inside it)\n" in result.stdout, result.stdout
    for internals in ("{{", "function_node", "[Op:", "IteratorGetNext", "' failed with"):
        assert internals not in result.stdout, result.stdout


def test_inspect_names_the_top_classes_of_a_known_dataset(tmp_path):
    # A two-photo COCO-Stuff layout: 8 of 16 pixels sky-other (156), 6 grass (123), 2
    # don't-care (255); COCO-Stuff's class 0 is "person", so names cannot be guessed.
    root = tmp_path / "coco"
    label = np.full((4, 4), 156, np.uint8)
    label[2:] = 123
    label[3, :2] = 255
    for folder in ("val_img", "val_label"):
        (root / folder).mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (4, 4), (90, 140, 200)).save(root / "val_img" / f"{name}.png")
        Image.fromarray(label).save(root / "val_label" / f"{name}.png")
    out = tmp_path / "records"
    converted = run_command("spade-tfrecords", "convert", "--dataset", "coco_stuff", "--root",
                            root, "--split", "val", "--no-instances", "--out", out)
    assert converted.returncode == 0, converted.stderr[-3000:]
    result = run_command("spade-tfrecords", "inspect", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "top classes by pixels: 156 sky-other 50.0%, 123 grass 37.5%, don't-care 12.5%\n" \
        in result.stdout, result.stdout


def _labels_by_key(records: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    from spade_tf.data.schema import parse_example

    return {example["key"].numpy().decode(): example["label"].numpy()
            for path in read_manifest(records).shard_paths(records)
            for example in map(parse_example, tf.data.TFRecordDataset(str(path)))}


def test_grey_label_maps_saved_as_rgb_convert_as_their_ids(tmp_path):
    # Issue 24, item 6: what image editors and cv2.imwrite write for a grey map.
    plain = _scenes(tmp_path / "plain")
    grey, colour = tmp_path / "grey", tmp_path / "colour"
    shutil.copytree(plain, grey)
    shutil.copytree(plain, colour)
    for path in sorted((grey / "labels").glob("*.png")):
        Image.open(path).convert("RGB").save(path)
    rendering = colour / "labels" / "scene_00004.png"
    rgb = np.asarray(Image.open(rendering).convert("RGB")).copy()
    rgb[..., 1] = 255 - rgb[..., 1]  # a rendering of the classes: channels differ
    Image.fromarray(rgb).save(rendering)

    results = run_commands(*[("spade-tfrecords", *_folders_args(data, tmp_path / f"out_{name}"))
                             for name, data in [("plain", plain), ("grey", grey),
                                                ("colour", colour)]])
    as_ids, as_rgb, refused = results
    assert as_ids.returncode == 0 and as_rgb.returncode == 0, as_rgb.stderr
    notes = [line for line in as_rgb.stderr.splitlines() if line.startswith("note: ")]
    assert notes and notes[0].endswith(
        " is an RGB image whose colour channels are all equal (a grey map saved as colour): its "
        "ids are read from one channel, here and in every such map."), as_rgb.stderr
    assert str(grey / "labels") in notes[0]
    assert "note: " not in as_ids.stderr
    # The records hold the same ids as the single-channel maps' records.
    plain_labels, grey_labels = _labels_by_key(tmp_path / "out_plain"), \
        _labels_by_key(tmp_path / "out_grey")
    assert sorted(grey_labels) == sorted(plain_labels) and len(plain_labels) == 12
    for key, label in plain_labels.items():
        np.testing.assert_array_equal(grey_labels[key], label)

    assert_one_line_error(refused, PROG, "1 of 12 pairs are unusable (listed above)")
    assert (f" {rendering} is an RGB image; expected one channel of ids (an 8- or 16-bit "
            "grayscale or palette PNG): it looks like a colour rendering of the classes; "
            "convert it to a single-channel map of ids with the dataset's palette.") \
        in refused.stderr
