"""Each layout's real naming rules, and partners that are missing."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfrecords_tools.datasets import (
    DatasetLayoutError,
    LabelRule,
    list_ade20k,
    list_cityscapes,
    list_coco_stuff,
    list_folders,
)


def _touch_png(path: Path, size=(8, 6), mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(size[::-1] + ((3,) if mode == "RGB" else ()), np.uint8)).save(path)


def test_cityscapes_pairs_images_with_label_and_instance_ids(tmp_path):
    for city, frame in [("aachen", "000000_000019"), ("bremen", "000001_000019")]:
        _touch_png(tmp_path / f"leftImg8bit/train/{city}/{city}_{frame}_leftImg8bit.png",
                   mode="RGB")
        for kind in ("labelIds", "instanceIds", "color"):
            _touch_png(tmp_path / f"gtFine/train/{city}/{city}_{frame}_gtFine_{kind}.png")
    listing = list_cityscapes(tmp_path, "train")
    assert [p.key for p in listing.pairs] == [
        "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit",
        "leftImg8bit/train/bremen/bremen_000001_000019_leftImg8bit"]
    pair = listing.pairs[0]
    assert pair.label.name == "aachen_000000_000019_gtFine_labelIds.png"
    assert pair.instance.name == "aachen_000000_000019_gtFine_instanceIds.png"
    assert listing.rule.num_classes == 35 and listing.rule.dontcare_label is None
    assert listing.has_instances and pair.problem is None


def test_ade20k_pairs_by_name_anywhere_under_the_root(tmp_path):
    (tmp_path / "images/training").mkdir(parents=True)
    for name in ("ADE_train_00000001.jpg", "ADE_train_00000002.jpg"):
        Image.new("RGB", (8, 6)).save(tmp_path / "images/training" / name)
    _touch_png(tmp_path / "annotations/training/ADE_train_00000001.png")
    _touch_png(tmp_path / "annotations/validation/ADE_val_00000001.png")
    listing = list_ade20k(tmp_path, "train")
    assert [(p.image.name, p.label.name if p.label else None, p.problem is None)
            for p in listing.pairs] == [
        ("ADE_train_00000001.jpg", "ADE_train_00000001.png", True),
        ("ADE_train_00000002.jpg", None, False)]
    assert "no label map for image" in listing.pairs[1].problem
    assert listing.rule.num_classes == 151 and not listing.has_instances


def test_coco_stuff_layout_and_dontcare(tmp_path):
    for folder, name in [("val_img", "1.jpg"), ("val_label", "1.png"), ("val_inst", "1.png")]:
        (tmp_path / folder).mkdir(exist_ok=True)
        Image.new("RGB" if folder == "val_img" else "L", (4, 4)).save(tmp_path / folder / name)
    listing = list_coco_stuff(tmp_path, "val")
    assert listing.rule.num_classes == 182 and listing.rule.dontcare_label == 255
    assert listing.pairs[0].instance.name == "1.png"
    with pytest.raises(DatasetLayoutError, match="COCO-Stuff image folder .*train_img"):
        list_coco_stuff(tmp_path, "train")


def test_folders_report_unmatched_files_both_ways(tmp_path):
    _touch_png(tmp_path / "img/a.png", mode="RGB")
    _touch_png(tmp_path / "img/b.png", mode="RGB")
    _touch_png(tmp_path / "lab/a.png")
    _touch_png(tmp_path / "lab/c.png")
    listing = list_folders(tmp_path / "img", tmp_path / "lab", 3)
    problems = {p.key: p.problem for p in listing.pairs}
    assert problems["a"] is None
    assert "no label map for image" in problems["b"] and "b.png" in problems["b"]
    assert "has no image" in problems["c"] and "c.png" in problems["c"]


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    with pytest.raises(DatasetLayoutError, match="no folders examples found"):
        list_folders(tmp_path / "img", tmp_path / "lab", 3)
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        list_folders(tmp_path / "nope", tmp_path / "lab", 3)
    with pytest.raises(DatasetLayoutError, match="--dontcare-label 2 is also a class id"):
        list_folders(tmp_path / "img", tmp_path / "lab", 3, dontcare_label=2)


def _touch_jpg(path: Path, size=(8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(size[::-1], np.uint8)).save(path, format="JPEG")


JPEG_WORDS = "is a JPEG file: lossy compression changes ids at region edges; save the"


def test_jpeg_label_maps_are_named_in_every_layout(tmp_path):
    # A JPEG map beside PNG ones: that pair's problem says why, not "no label map".
    _touch_png(tmp_path / "f/img/a.png", mode="RGB")
    _touch_png(tmp_path / "f/img/b.png", mode="RGB")
    _touch_png(tmp_path / "f/lab/a.png")
    _touch_jpg(tmp_path / "f/lab/b.jpg")
    _touch_png(tmp_path / "f/inst/b.png")
    _touch_jpg(tmp_path / "f/inst/a.jpeg")
    listing = list_folders(tmp_path / "f/img", tmp_path / "f/lab", 3, instances=tmp_path / "f/inst")
    problems = {p.key: p.problem for p in listing.pairs}
    assert problems == {
        "a": f"the instance map {tmp_path / 'f/inst/a.jpeg'} {JPEG_WORDS} instance maps as PNG",
        "b": f"the label map {tmp_path / 'f/lab/b.jpg'} {JPEG_WORDS} label maps as PNG"}

    city = tmp_path / "city"
    _touch_png(city / "leftImg8bit/val/ulm/ulm_1_leftImg8bit.png", mode="RGB")
    _touch_png(city / "leftImg8bit/val/ulm/ulm_2_leftImg8bit.png", mode="RGB")
    _touch_png(city / "gtFine/val/ulm/ulm_1_gtFine_labelIds.png")
    _touch_jpg(city / "gtFine/val/ulm/ulm_2_gtFine_labelIds.jpg")
    for name in ("ulm_1", "ulm_2"):
        _touch_png(city / f"gtFine/val/ulm/{name}_gtFine_instanceIds.png")
    pair = list_cityscapes(city, "val").pairs[1]
    assert pair.problem.startswith("the label map ") and JPEG_WORDS in pair.problem
    assert "ulm_2_gtFine_labelIds.jpg" in pair.problem

    ade = tmp_path / "ade"
    for index in (1, 2):
        Image.new("RGB", (8, 6)).save(_mkdirs(ade / f"images/training/ADE_train_{index}.jpg"))
    _touch_png(ade / "annotations/training/ADE_train_1.png")
    _touch_jpg(ade / "annotations/training/ADE_train_2.jpg")
    listing = list_ade20k(ade, "train")
    assert [p.key for p in listing.pairs] == ["images/training/ADE_train_1",
                                              "images/training/ADE_train_2"]
    assert listing.pairs[0].problem is None and JPEG_WORDS in listing.pairs[1].problem

    coco = tmp_path / "coco"
    for folder, name in [("val_img", "1.jpg"), ("val_img", "2.jpg"), ("val_label", "1.png"),
                         ("val_inst", "1.png"), ("val_inst", "2.png")]:
        Image.new("RGB" if folder == "val_img" else "L", (4, 4)).save(
            _mkdirs(coco / folder / name))
    _touch_jpg(coco / "val_label/2.jpg")
    pair = list_coco_stuff(coco, "val").pairs[1]
    assert pair.problem.startswith("the label map ") and "val_label/2.jpg" in pair.problem


def _mkdirs(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_a_folder_of_jpeg_maps_is_refused_before_decoding(tmp_path):
    _touch_png(tmp_path / "img/a.png", mode="RGB")
    _touch_png(tmp_path / "img/b.png", mode="RGB")
    _touch_jpg(tmp_path / "lab/a.jpg")
    _touch_jpg(tmp_path / "lab/b.jpg")
    with pytest.raises(DatasetLayoutError, match=r"the label maps in .*lab are JPEG files "
                                                 r"\(2, e.g. a.jpg\): lossy compression"):
        list_folders(tmp_path / "img", tmp_path / "lab", 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"no label maps \(.png\) found in .*empty for "
                                                 "the 2 images"):
        list_folders(tmp_path / "img", tmp_path / "empty", 3)
    with pytest.raises(DatasetLayoutError, match="--images and --labels are the same folder"):
        list_folders(tmp_path / "img", tmp_path / "img", 3)


def test_wrong_roots_and_splits_say_what_was_expected(tmp_path):
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(DatasetLayoutError, match="--root .*file.txt is a file; expected the "
                                                 "Cityscapes folder that holds leftImg8bit/"):
        list_cityscapes(tmp_path / "file.txt", "train")
    with pytest.raises(DatasetLayoutError, match="--root .*nope does not exist; expected the "
                                                 "COCO-Stuff folder"):
        list_coco_stuff(tmp_path / "nope", "train")
    _touch_png(tmp_path / "city/leftImg8bit/val/x/x_1_leftImg8bit.png", mode="RGB")
    with pytest.raises(DatasetLayoutError, match=r"train does not exist \(--split train; "
                                                 r"splits found: val\)"):
        list_cityscapes(tmp_path / "city", "train")
    (tmp_path / "coco/val_img").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"test_img does not exist \(--split test; "
                                                 r"splits found: val\)"):
        list_coco_stuff(tmp_path / "coco", "test")


def test_out_of_range_ids_hint_at_options_the_layout_has(tmp_path):
    from tfrecords_tools.checks import check_pair

    city = tmp_path / "city"
    _touch_png(city / "leftImg8bit/val/x/x_1_leftImg8bit.png", mode="RGB")
    label = city / "gtFine/val/x/x_1_gtFine_labelIds.png"
    label.parent.mkdir(parents=True)
    Image.fromarray(np.full((6, 8), 40, np.uint8)).save(label)
    _touch_png(city / "gtFine/val/x/x_1_gtFine_instanceIds.png")
    listing = list_cityscapes(city, "val")
    problem = check_pair(listing.pairs[0], listing.rule).problem
    assert problem.endswith("has label ids [40] outside 0..34 (48 pixels); check that it is a "
                            "Cityscapes label map of ids.")
    problem = check_pair(listing.pairs[0], LabelRule(35)).problem  # as --dataset folders
    assert problem.endswith("check --num-classes / --dontcare-label or the label map.")
