"""Tests for the procedural synthetic dataset (numpy + Pillow only)."""

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from spade_tf.classes import TABLES_DIR, class_table
from spade_tf.evaluation.synthetic import classify_colors
from tfrecords_tools import synthetic as syn


def _scene(seed, index, size=64):
    return syn.generate_scene(syn.scene_rng(seed, index), size)


def _read(path):
    with Image.open(path) as im:
        return im.mode, np.array(im)


def test_class_table_is_consistent_and_separable():
    assert [c.id for c in syn.CLASSES] == list(range(syn.NUM_CLASSES))
    assert len({c.name for c in syn.CLASSES}) == syn.NUM_CLASSES
    colors = syn.BASE_COLORS.astype(float)
    min_dist = min(np.linalg.norm(colors[i] - colors[j])
                   for i, j in itertools.combinations(range(syn.NUM_CLASSES), 2))
    # Worst-case offset of a rendered pixel from its base colour.
    max_offset = np.sqrt(3) * (syn.TEXTURE_AMPLITUDE + syn.SHADE_AMPLITUDE)
    assert min_dist > 2 * max_offset


def test_packaged_class_table_is_what_the_scenes_draw():
    data = json.loads((TABLES_DIR / "synthetic.json").read_text())
    assert data["dontcare"] is None
    # The values the scenes were written with; the ids are the generator's own constants.
    assert [(c["id"], c["name"], tuple(c["color"]), c["thing"]) for c in data["classes"]] == [
        (syn.SKY, "sky", (100, 190, 250), False),
        (syn.GROUND, "ground", (200, 180, 90), False),
        (syn.WATER, "water", (20, 40, 180), False),
        (syn.ROAD, "road", (60, 55, 60), False),
        (syn.TREE, "tree", (40, 160, 30), True),
        (syn.BUILDING, "building", (230, 215, 200), True),
        (syn.CAR, "car", (210, 40, 40), True),
        (syn.PERSON, "person", (200, 60, 200), True),
    ]
    table = class_table("synthetic", len(data["classes"]))  # the table every tool shows
    assert table.names == tuple(c["name"] for c in data["classes"])
    assert table.colors == tuple(tuple(c["color"]) for c in data["classes"])
    drawn = set()
    for index in range(20):
        scene = _scene(4, index)
        for entry in data["classes"]:
            where = scene.label == entry["id"]
            if not where.any():
                continue
            drawn.add(entry["id"])
            # Each class is painted near its table colour, and only things get instances.
            offset = np.abs(scene.image[where].astype(int) - entry["color"])
            assert offset.max() <= syn.TEXTURE_AMPLITUDE + syn.SHADE_AMPLITUDE
            assert (scene.instance[where] > 0).all() == entry["thing"]
            assert (scene.instance[where] == 0).all() != entry["thing"]
    assert drawn == set(range(len(data["classes"])))


def test_same_seed_same_scene_and_different_seed_differs():
    a, b, c = _scene(7, 3), _scene(7, 3), _scene(8, 3)
    for field in ("image", "label", "instance"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.label, c.label)
    assert not np.array_equal(a.label, _scene(7, 4).label)


def test_scene_types_and_shapes():
    s = _scene(0, 0, size=32)
    assert s.image.dtype == np.uint8 and s.image.shape == (32, 32, 3)
    assert s.label.dtype == np.uint8 and s.label.shape == (32, 32)
    assert s.instance.dtype == np.uint16 and s.instance.shape == (32, 32)


def test_image_is_render_of_maps_and_classifies_back_exactly():
    for i in range(40):
        s = _scene(1, i, size=64 if i % 4 else 128)
        np.testing.assert_array_equal(s.image, syn.render_image(s.label, s.instance))
        np.testing.assert_array_equal(classify_colors(s.image), s.label)


def test_render_stays_near_base_colour_and_round_trips_for_any_maps():
    rng = np.random.default_rng(0)
    label = rng.integers(0, syn.NUM_CLASSES, (96, 96)).astype(np.uint8)
    instance = rng.integers(0, 65536, (96, 96)).astype(np.uint16)
    image = syn.render_image(label, instance)
    offset = np.abs(image.astype(int) - syn.BASE_COLORS[label])
    assert offset.max() <= syn.TEXTURE_AMPLITUDE + syn.SHADE_AMPLITUDE
    np.testing.assert_array_equal(classify_colors(image), label)


def test_instances_of_a_class_get_different_shades():
    label = np.full((8, 8), syn.CAR, dtype=np.uint8)
    images = [syn.render_image(label, np.full((8, 8), syn.CAR * 1000 + k, np.uint16))
              for k in range(1, 6)]
    for a, b in itertools.combinations(images, 2):
        assert not np.array_equal(a, b)


def test_every_class_appears_in_twenty_scenes():
    seen = set()
    for i in range(20):
        seen |= set(np.unique(_scene(2, i).label).tolist())
    assert seen == set(range(syn.NUM_CLASSES))


def test_instance_ids_encode_things_and_are_unique():
    thing = np.isin(np.arange(syn.NUM_CLASSES), syn.THING_CLASSES)
    repeated_class = False
    for i in range(20):
        s = _scene(3, i)
        is_thing = thing[s.label]
        assert (s.instance[~is_thing] == 0).all()
        ids = s.instance[is_thing].astype(int)
        assert (ids > 0).all()
        np.testing.assert_array_equal(ids // syn.INSTANCE_STRIDE, s.label[is_thing])
        assert (ids % syn.INSTANCE_STRIDE >= 1).all()
        classes = np.unique(ids) // syn.INSTANCE_STRIDE
        repeated_class |= len(classes) > len(set(classes.tolist()))
    assert repeated_class  # some scene shows two objects of one class


def test_write_dataset_round_trips_through_pillow(tmp_path):
    calls = []
    out = syn.write_dataset(tmp_path / "ds", num=3, size=32, seed=5,
                            progress=lambda done, total: calls.append((done, total)))
    assert out == tmp_path / "ds"
    assert calls == [(1, 3), (2, 3), (3, 3)]
    for i in range(3):
        s = syn.generate_scene(syn.scene_rng(5, i), 32)
        name = f"scene_{i:05d}.png"
        mode, image = _read(out / "images" / name)
        assert mode == "RGB"
        np.testing.assert_array_equal(image, s.image)
        mode, label = _read(out / "labels" / name)
        assert mode == "L"
        np.testing.assert_array_equal(label, s.label)
        mode, instance = _read(out / "instances" / name)
        assert mode in ("I;16", "I")
        np.testing.assert_array_equal(instance.astype(np.int64), s.instance)
        assert s.instance.max() > 255  # the 16-bit path is really exercised


def test_manifest_parses_and_no_temp_files_remain(tmp_path):
    out = syn.write_dataset(tmp_path, num=2, size=16)
    manifest = json.loads((out / syn.MANIFEST_NAME).read_text())
    assert manifest["format"] == syn.FORMAT_NAME and manifest["complete"] is True
    assert (manifest["num_scenes"], manifest["size"], manifest["seed"]) == (2, 16, 0)
    assert [(c["id"], c["name"], tuple(c["color"]), c["thing"])
            for c in manifest["classes"]] == [
        (c.id, c.name, c.color, c.thing) for c in syn.CLASSES]
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {syn.MANIFEST_NAME} | {
        f"{sub}/scene_{i:05d}.png" for sub in syn.SUBDIRS for i in range(2)}


def test_rewrite_replaces_older_dataset(tmp_path):
    syn.write_dataset(tmp_path, num=3, size=16, seed=1)
    syn.write_dataset(tmp_path, num=1, size=16, seed=2)
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == [
        "scene_00000.png"]
    _, label = _read(tmp_path / "labels" / "scene_00000.png")
    np.testing.assert_array_equal(label, _scene(2, 0, size=16).label)


def test_interrupted_write_leaves_only_whole_files(tmp_path, monkeypatch):
    def fail_second_scene(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        syn.write_dataset(tmp_path, num=4, size=16, progress=fail_second_scene)
    assert json.loads((tmp_path / syn.MANIFEST_NAME).read_text())["complete"] is False
    assert len(list((tmp_path / "images").iterdir())) == 2

    def broken_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        syn.write_dataset(tmp_path, num=2, size=16)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [
        tmp_path / syn.MANIFEST_NAME]


@pytest.mark.parametrize("kwargs, argument", [
    ({"num": 0}, "num"),
    ({"num": 2.0}, "num"),
    ({"num": True}, "num"),
    ({"num": 1, "size": 8}, "size"),
    ({"num": 1, "size": 20}, "size"),
    ({"num": 1, "size": "64"}, "size"),
    ({"num": 1, "seed": -1}, "seed"),
])
def test_bad_arguments_raise_value_error_naming_them(tmp_path, kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must be .*got"):
        syn.write_dataset(tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()


def test_refuses_foreign_or_file_out_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="out_dir .*non-empty"):
        syn.write_dataset(tmp_path, num=1, size=16)
    with pytest.raises(ValueError, match="out_dir must be a directory"):
        syn.write_dataset(tmp_path / "notes.txt", num=1, size=16)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_generate_scene_rejects_bad_size():
    with pytest.raises(ValueError, match="size must be .*got 100"):
        syn.generate_scene(np.random.default_rng(0), size=100)


def test_render_and_classify_reject_bad_inputs():
    label = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="label values"):
        syn.render_image(label + syn.NUM_CLASSES, np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match="instance must be"):
        syn.render_image(label, np.zeros((4, 5), np.uint16))
    with pytest.raises(ValueError, match="image must be a uint8"):
        classify_colors(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="image must be a uint8"):
        classify_colors(np.zeros((4, 4), np.uint8))
