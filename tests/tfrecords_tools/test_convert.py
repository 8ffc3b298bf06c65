"""Conversion round trips, alignment under augmentation, bad inputs, resume."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from support.synthetic_data import SCENES, SIZE, quiet, synthetic_listing

from spade_cli.tfrecords import main
from spade_tf.config import DataConfig, ModelConfig
from spade_tf.data import DataError, explain_data_errors, load_dataset, read_manifest
from spade_tf.evaluation.synthetic import classify_colors
from tfrecords_tools import convert as convert_module
from tfrecords_tools import synthetic
from tfrecords_tools.convert import ConversionFailed, convert_listing
from tfrecords_tools.datasets import list_folders
from tfrecords_tools.inspect import inspect_dataset

MODEL = ModelConfig(num_classes=synthetic.NUM_CLASSES, use_instance_edges=True, crop_size=64)


def _read(folder, kind, key):
    return np.asarray(Image.open(folder / kind / f"{key}.png"))


def _all_examples(dataset) -> list[dict]:
    examples = []
    for batch in dataset:
        for i in range(batch["label"].shape[0]):
            examples.append({name: value[i].numpy() for name, value in batch.items()})
    return examples


def test_round_trip_is_bit_identical_without_augmentation(synthetic_dir, synthetic_records):
    model = ModelConfig(num_classes=synthetic.NUM_CLASSES, use_instance_edges=True,
                        crop_size=SIZE, num_upsampling_layers="normal")
    data = DataConfig(preprocess="none")
    dataset = load_dataset(synthetic_records, model, data, 5, augment=False, shuffle=False,
                           drop_remainder=False)
    examples = _all_examples(dataset)
    assert len(examples) == SCENES
    # Without keys in the batch, match each example to its source by its label map.
    sources = {}
    for index in range(SCENES):
        key = f"scene_{index:05d}"
        sources[_read(synthetic_dir, "labels", key).tobytes()] = key
    for example in examples:
        key = sources[example["label"].astype(np.uint8).tobytes()]
        np.testing.assert_array_equal(example["instance"],
                                      _read(synthetic_dir, "instances", key))
        image = np.round((example["image"] + 1.0) * 127.5).astype(np.uint8)
        np.testing.assert_array_equal(image, _read(synthetic_dir, "images", key))
    assert len({sources[e["label"].astype(np.uint8).tobytes()] for e in examples}) == SCENES


def _find_crop(photo, sources):
    """(key, flipped, top, left) of the source crop equal to ``photo``, or None."""
    size = photo.shape[0]
    for key, source in sources.items():
        for flipped in (False, True):
            image = source["images"][:, ::-1] if flipped else source["images"]
            for top in range(image.shape[0] - size + 1):
                for left in range(image.shape[1] - size + 1):
                    if np.array_equal(image[top:top + size, left:left + size], photo):
                        return key, flipped, top, left
    return None


def test_crop_and_flip_keep_photo_label_and_instances_aligned(synthetic_dir,
                                                              synthetic_records):
    # Width scaled to its own size (no resampling), then random 64x64 crops and flips:
    # each photo is an exact crop of a source, and its maps must be the same crop.
    data = DataConfig(preprocess="scale_width_and_crop", load_size=SIZE, flip=True)
    examples = _all_examples(load_dataset(synthetic_records, MODEL, data, 4, seed=3))
    sources = {f"scene_{i:05d}": {kind: _read(synthetic_dir, kind, f"scene_{i:05d}")
                                  for kind in ("images", "labels", "instances")}
               for i in range(SCENES)}
    flips = set()
    for example in examples:
        photo = np.round((example["image"] + 1.0) * 127.5).astype(np.uint8)
        found = _find_crop(photo, sources)
        assert found is not None, "the photo is not a crop of any source photo"
        key, flipped, top, left = found
        flips.add(flipped)
        for kind, got in (("labels", example["label"]), ("instances", example["instance"])):
            source = sources[key][kind][:, ::-1] if flipped else sources[key][kind]
            np.testing.assert_array_equal(got, source[top:top + 64, left:left + 64])
        np.testing.assert_array_equal(classify_colors(photo), example["label"])
    assert flips == {False, True}
    assert len(examples) == SCENES // 4 * 4


def test_resize_and_crop_sizes_and_value_range(synthetic_records):
    data = DataConfig(preprocess="resize_and_crop", load_size=80)
    batch = next(iter(load_dataset(synthetic_records, MODEL, data, 4)))
    assert batch["image"].shape == (4, 64, 64, 3) and batch["label"].shape == (4, 64, 64)
    assert -1.0 <= batch["image"].numpy().min() and batch["image"].numpy().max() <= 1.0
    assert set(np.unique(batch["label"])) <= set(range(synthetic.NUM_CLASSES))


def test_manifest_and_inspect(synthetic_records):
    manifest = read_manifest(synthetic_records)
    assert manifest.num_examples == SCENES and len(manifest.shards) == 3
    assert sum(s.num_examples for s in manifest.shards) == SCENES
    assert manifest.has_instances and manifest.dontcare_label is None
    assert len(manifest.class_histogram) == synthetic.NUM_CLASSES + 1
    assert sum(manifest.class_histogram) == SCENES * SIZE * SIZE
    _, report = inspect_dataset(synthetic_records)
    assert report.problems == [] and report.num_examples == SCENES
    np.testing.assert_array_equal(report.class_histogram, manifest.class_histogram)


def test_model_and_data_must_agree(synthetic_records):
    with pytest.raises(DataError, match="the data has 8 classes, the model config has "
                                        "num_classes=9"):
        load_dataset(synthetic_records, ModelConfig(num_classes=9, crop_size=64),
                     DataConfig(), 2)


def _copy_dataset(source, target):
    for kind in ("images", "labels", "instances"):
        (target / kind).mkdir(parents=True)
        for path in (source / kind).iterdir():
            (target / kind / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("damage, words", [
    ("label_out_of_range", "has label ids [9] outside 0..7"),
    ("size_mismatch", "is 48x48 but its image"),
    ("missing_partner", "no label map for image"),
    ("undecodable_image", "cannot be decoded"),
])
def test_bad_pairs_stop_with_a_summary_or_are_skipped(damage, words, synthetic_dir, tmp_path):
    data = _copy_dataset(synthetic_dir, tmp_path / "data")
    victim = "scene_00003.png"
    if damage == "label_out_of_range":
        label = _read(data, "labels", "scene_00003").copy()
        label[:2, :2] = 9
        Image.fromarray(label).save(data / "labels" / victim)
    elif damage == "size_mismatch":
        Image.fromarray(np.zeros((48, 48), np.uint8)).save(data / "labels" / victim)
    elif damage == "missing_partner":
        (data / "labels" / victim).unlink()
    else:
        (data / "images" / victim).write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    with pytest.raises(ConversionFailed) as error:
        convert_listing(synthetic_listing(data), out, workers=1, report=quiet)
    assert words in str(error.value) and victim in str(error.value)
    assert "1 of 12 pairs are unusable" in str(error.value)
    assert not out.exists() or not any(out.glob("*.tfrecord"))

    manifest = convert_listing(synthetic_listing(data), out, workers=1, skip_bad=True,
                               report=quiet)
    assert manifest.num_examples == SCENES - 1
    assert len(manifest.skipped) == 1 and words in manifest.skipped[0]["problem"]


def test_interrupted_conversion_leaves_no_whole_looking_shard_and_resumes(
        synthetic_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    listing = synthetic_listing(synthetic_dir)
    real_write = convert_module._write_shard
    written = []

    def write_then_die(path, records):
        if written:
            staging = path.with_name(f".{path.name}.tmp")
            staging.write_bytes(b"half a shard")
            raise KeyboardInterrupt
        written.append(path.name)
        return real_write(path, records)

    monkeypatch.setattr(convert_module, "_write_shard", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        convert_listing(listing, out, num_shards=3, workers=1, report=quiet)
    assert sorted(p.name for p in out.glob("*.tfrecord")) == written
    assert not (out / "manifest.json").exists()
    first_shard = (out / written[0]).stat().st_mtime_ns

    monkeypatch.setattr(convert_module, "_write_shard", real_write)
    manifest = convert_listing(listing, out, num_shards=3, workers=1, report=quiet)
    assert (out / written[0]).stat().st_mtime_ns == first_shard  # resumed, not redone
    assert manifest.num_examples == SCENES and not list(out.glob(".*.tmp"))
    _, report = inspect_dataset(out)
    assert report.problems == []


def _copy_records(source, target):
    shutil.copytree(source, target)
    return target


def test_corrupted_shard_is_named_at_read_time(synthetic_records, tmp_path):
    out = _copy_records(synthetic_records, tmp_path / "records")
    shard = sorted(out.glob("*.tfrecord"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    shard.write_bytes(bytes(data))
    input_fn_data = DataConfig(preprocess="none", shuffle_buffer=0)
    model = ModelConfig(num_classes=synthetic.NUM_CLASSES, use_instance_edges=True,
                        crop_size=SIZE)
    dataset = load_dataset(out, model, input_fn_data, 2, augment=False, shuffle=False)
    with pytest.raises(DataError, match=f"shard .*{shard.name} is corrupt after"):
        with explain_data_errors([str(p) for p in sorted(out.glob("*.tfrecord"))]):
            for _ in dataset:
                pass
    _, report = inspect_dataset(out)
    assert any(shard.name in problem and "corrupt" in problem for problem in report.problems)


def test_truncated_shard_is_caught_before_reading(synthetic_records, tmp_path):
    out = _copy_records(synthetic_records, tmp_path / "records")
    shard = sorted(out.glob("*.tfrecord"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(DataError, match="was truncated or modified"):
        load_dataset(out, MODEL, DataConfig(), 2)


def test_empty_folder_and_cli(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    code = main(["convert", "--dataset", "folders", "--images", str(tmp_path / "img"),
                 "--labels", str(tmp_path / "lab"), "--num-classes", "3",
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "no folders examples found" in capsys.readouterr().err

    assert main(["synthetic", "--out", str(tmp_path / "syn"), "--num", "4", "--size",
                 "64"]) == 0
    assert main(["convert", "--dataset", "folders", "--images", str(tmp_path / "syn/images"),
                 "--labels", str(tmp_path / "syn/labels"), "--instances",
                 str(tmp_path / "syn/instances"), "--num-classes", "8", "--workers", "2",
                 "--out", str(tmp_path / "tfr")]) == 0
    err = capsys.readouterr().err
    assert "checked pairs: 4/4" in err and "wrote 4 examples in 1 shard to" in err
    assert main(["inspect", str(tmp_path / "tfr")]) == 0
    assert "schema check: OK" in capsys.readouterr().out
    state = json.loads((tmp_path / "tfr" / ".convert-state.json").read_text())
    assert "fingerprint" in state
    assert list_folders(tmp_path / "syn/images", tmp_path / "syn/labels", 8).rule.num_classes == 8
    assert tf.io.gfile.exists(str(tmp_path / "tfr" / "manifest.json"))


def _files(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_interrupted_overwrite_keeps_the_old_conversion_and_resumes(
        synthetic_dir, synthetic_records, tmp_path, monkeypatch):
    old = _copy_records(synthetic_records, tmp_path / "records")
    before = _files(old)
    other = _copy_dataset(synthetic_dir, tmp_path / "other")
    for kind in ("images", "labels", "instances"):
        (other / kind / "scene_00000.png").unlink()
    listing = synthetic_listing(other)
    real_write = convert_module._write_shard
    written = []

    def write_then_die(path, records):
        if written:
            raise KeyboardInterrupt
        written.append(path.name)
        return real_write(path, records)

    monkeypatch.setattr(convert_module, "_write_shard", write_then_die)
    with pytest.raises(KeyboardInterrupt) as stop:
        convert_listing(listing, old, num_shards=2, workers=1, overwrite=True, report=quiet)
    assert str(stop.value) == (f"interrupted after 1 of 2 shards; run the same command to "
                               f"resume (finished shards are kept); {old} still holds the "
                               "earlier conversion")
    assert _files(old) == before
    staging = tmp_path / ".records.converting"
    assert sorted(p.name for p in staging.iterdir()) == [".convert-state.json", *written]
    kept = (staging / written[0]).stat().st_mtime_ns

    # Without --overwrite the old conversion is still refused, untouched.
    with pytest.raises(ConversionFailed, match="already holds a finished conversion of "
                                               r"folders train \(12 examples in 3 shards\)"):
        convert_listing(listing, old, num_shards=2, workers=1, report=quiet)
    monkeypatch.setattr(convert_module, "_write_shard", real_write)
    messages = []
    manifest = convert_listing(listing, old, num_shards=2, workers=1, overwrite=True,
                               report=messages.append)
    assert "(resuming: 1 finished shard kept)" in messages[0]
    assert manifest.num_examples == SCENES - 1 and read_manifest(old).num_examples == SCENES - 1
    assert (old / written[0]).stat().st_mtime_ns == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "records"]
    _, report = inspect_dataset(old)
    assert report.problems == []


def test_the_same_conversion_again_does_nothing_and_repairs_a_lost_shard(
        synthetic_dir, synthetic_records, tmp_path, monkeypatch):
    out = _copy_records(synthetic_records, tmp_path / "records")
    before = _files(out)

    def no_check(*args, **kwargs):
        raise AssertionError("the pairs were checked again")

    monkeypatch.setattr(convert_module, "check_pairs", no_check)
    messages = []
    manifest = convert_listing(synthetic_listing(synthetic_dir), out, num_shards=3, workers=1,
                               report=messages.append)
    assert manifest == read_manifest(out) and _files(out) == before
    assert messages == [f"{out} already holds this conversion (12 examples in 3 shards); "
                        "nothing to do (add --overwrite to convert again)"]

    monkeypatch.undo()
    lost = sorted(out.glob("*.tfrecord"))[1]
    lost.unlink()
    messages.clear()
    convert_listing(synthetic_listing(synthetic_dir), out, num_shards=3, workers=1,
                    report=messages.append)
    assert messages[0].startswith(f"repairing {out}: shard {lost} listed in the manifest is "
                                  "missing")
    after = _files(out)
    assert after[lost.name][0] == before[lost.name][0]
    for name in before:  # the other shards were kept as they were
        if name.endswith(".tfrecord") and name != lost.name:
            assert after[name] == before[name]


def test_output_folders_that_are_not_a_conversion_are_refused_even_with_overwrite(
        synthetic_dir, synthetic_records, tmp_path):
    listing = synthetic_listing(synthetic_dir)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(ConversionFailed, match=f"--out {mine} is not empty and holds no "
                                                   r"conversion \(notes.txt\)"):
            convert_listing(listing, mine, workers=1, overwrite=overwrite, report=quiet)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    records = _copy_records(synthetic_records, tmp_path / "records")
    (records / "README.txt").write_text("mine")
    before = _files(records)
    with pytest.raises(ConversionFailed, match=r"and other files \(README.txt\) that "
                                               "--overwrite would delete"):
        convert_listing(listing, records, num_shards=2, workers=1, overwrite=True,
                        report=quiet)
    assert _files(records) == before
    with pytest.raises(ConversionFailed, match="num_shards -1: expected a positive number"):
        convert_listing(listing, tmp_path / "new", num_shards=-1, report=quiet)
    with pytest.raises(ConversionFailed, match="workers -2: expected a positive number"):
        convert_listing(listing, tmp_path / "new", workers=-2, report=quiet)
    assert not (tmp_path / "new").exists()


def test_an_unfinished_conversion_of_other_data_is_not_thrown_away(synthetic_dir, tmp_path,
                                                                    monkeypatch):
    out = tmp_path / "out"
    real_write = convert_module._write_shard
    calls = []

    def write_once(path, records):
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        return real_write(path, records)

    monkeypatch.setattr(convert_module, "_write_shard", write_once)
    with pytest.raises(KeyboardInterrupt):
        convert_listing(synthetic_listing(synthetic_dir), out, num_shards=3, workers=1,
                        report=quiet)
    before = _files(out)
    monkeypatch.undo()
    with pytest.raises(ConversionFailed, match=r"already holds an unfinished conversion of "
                                               r"folders train \(1 of 3 shards written\)"):
        convert_listing(synthetic_listing(synthetic_dir), out, num_shards=4, workers=1,
                        report=quiet)
    assert _files(out) == before


def test_a_pair_that_changes_after_the_check_is_reported(synthetic_dir, tmp_path,
                                                         monkeypatch):
    from tfrecords_tools.checks import BadPair

    def changed(pair, rule):
        raise BadPair(f"{pair.image} cannot be decoded: image file is truncated")

    monkeypatch.setattr(convert_module, "encode_pair", changed)
    with pytest.raises(ConversionFailed, match="the file changed during the conversion; run "
                                               "the same command again"):
        convert_listing(synthetic_listing(synthetic_dir), tmp_path / "out", workers=1,
                        report=quiet)
    assert not list((tmp_path / "out").glob("*.tfrecord"))
