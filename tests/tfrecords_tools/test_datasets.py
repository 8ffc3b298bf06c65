"""Each layout's real naming rules, and partners that are missing."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfrecords_tools.datasets import (
    DatasetLayoutError,
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
