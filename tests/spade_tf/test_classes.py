"""Class tables: names and colours of each dataset's label ids, user class files, colouring."""

import json

import numpy as np
import pytest

from spade_tf import class_palette, classes
from spade_tf.classes import (
    DONTCARE_COLOR,
    UNKNOWN_COLOR,
    ClassTable,
    ClassTableError,
    class_table,
    generated_palette,
    read_class_file,
)
from spade_tf.errors import SpadeError
from spade_tf.evaluation import synthetic

# name -> (num_classes, don't-care id) as the configs have them
DATASETS = {"ade20k": (151, None), "coco_stuff": (182, 255), "cityscapes": (35, None),
            "synthetic": (8, None)}


def _table(name):
    return class_table(name, *DATASETS[name])


def _lab_distances(palette):
    lab = class_palette._lab(np.asarray(palette, dtype=np.float64))
    distances = np.sqrt(((lab[:, None] - lab[None]) ** 2).sum(-1))
    distances[np.eye(len(lab), dtype=bool)] = np.inf
    return distances


def _rgb_distances(palette):
    rgb = np.asarray(palette, dtype=np.float64)
    distances = np.sqrt(((rgb[:, None] - rgb[None]) ** 2).sum(-1))
    distances[np.eye(len(rgb), dtype=bool)] = np.inf
    return distances


# -- the dataset tables -------------------------------------------------------------------


def test_ade20k_table():
    table = _table("ade20k")
    assert len(table) == table.num_classes == 151 and table.dontcare_id is None
    assert (table.names[0], table.colors[0]) == ("other", (0, 0, 0))
    assert (table.name_of(1), table.color_of(1)) == ("wall", (120, 120, 120))
    assert (table.name_of(3), table.color_of(3)) == ("sky", (6, 230, 230))
    assert (table.name_of(13), table.color_of(13)) == ("person", (150, 5, 61))
    assert (table.name_of(21), table.color_of(21)) == ("car", (0, 102, 200))
    assert (table.name_of(150), table.color_of(150)) == ("flag", (92, 0, 255))
    assert table.name_of(49) == "skyscraper" and table.color_of(49) != (140, 140, 140)
    assert table.color_of(7) == (140, 140, 140)  # road keeps the palette's grey


def test_coco_stuff_table():
    table = _table("coco_stuff")
    assert len(table) == 182 and table.dontcare_id == 255
    assert table.name_of(0) == "person" and table.name_of(181) == "wood"
    assert table.name_of(11) == "street sign" and table.name_of(156) == "sky-other"
    assert table.name_of(255) == "don't care" and table.color_of(255) == DONTCARE_COLOR
    # PASCAL VOC colour map at the COCO-Stuff label number (id + 1)
    assert table.color_of(0) == (128, 0, 0) and table.color_of(1) == (0, 128, 0)
    assert table.color_of(2) == (128, 128, 0) and table.color_of(6) == (128, 128, 128)
    assert DONTCARE_COLOR not in table.colors


def test_coco_stuffs_own_list_layout_reads_with_its_dontcare_line(tmp_path):
    """COCO-Stuff's own class list ("ID NAME" lines, "255 unlabeled" last), as the sample
    data has it; the whole list is compared with the COCO-Stuff table in
    tests/tfrecords_tools/test_coco_stuff_sample.py, where the sample data is."""
    listing = tmp_path / "classes.txt"
    listing.write_text("0 person\n1 bicycle\n2 car\n255 unlabeled\n")
    table = read_class_file(listing, 3, 255)
    assert table.names == ("person", "bicycle", "car")
    assert (table.dontcare_id, table.dontcare_name) == (255, "unlabeled")


def test_cityscapes_table():
    table = _table("cityscapes")
    assert len(table) == 35 and table.dontcare_id is None
    assert (table.name_of(26), table.color_of(26)) == ("car", (0, 0, 142))
    assert (table.name_of(7), table.color_of(7)) == ("road", (128, 64, 128))
    assert (table.name_of(24), table.color_of(24)) == ("person", (220, 20, 60))
    assert (table.name_of(33), table.color_of(33)) == ("bicycle", (119, 11, 32))
    assert (table.name_of(0), table.color_of(0)) == ("unlabeled", (0, 0, 0))
    assert table.name_of(34) == "license plate"


def test_synthetic_table_is_the_scenes_own():
    table = _table("synthetic")
    assert table.names == tuple(c.name for c in synthetic.CLASSES)
    assert table.colors == tuple(c.color for c in synthetic.CLASSES)
    assert (table.name_of(6), table.color_of(6)) == ("car", (210, 40, 40))


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_tables_have_unique_names_and_colours(name):
    table = _table(name)
    assert len(set(table.names)) == len(table)
    assert len(set(table.colors)) == len(table) and table.has_unique_colors
    assert table.source


@pytest.mark.parametrize("name", classes.DATASET_TABLES)
def test_json_files_cite_their_source_and_keep_changed_colours(name):
    path = classes.TABLES_DIR / f"{name}.json"
    data = json.loads(path.read_text())
    assert "source" in data and len(data["source"]) > 50
    assert [c["id"] for c in data["classes"]] == list(range(len(data["classes"])))
    colors = [tuple(c["color"]) for c in data["classes"]]
    changed = {c["id"] for c in data["classes"] if "source_color" in c}
    for entry in data["classes"]:
        if "source_color" in entry:  # changed only because another class has that colour
            assert tuple(entry["source_color"]) in colors
            assert tuple(entry["source_color"]) != tuple(entry["color"])
    assert changed == {"ade20k": {49}, "coco_stuff": set(),
                       "cityscapes": {1, 2, 3, 4, 18, 34}}[name]


# -- colouring and reading colours back ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_colorize_round_trip(name):
    table = _table(name)
    rng = np.random.default_rng(0)
    valid = list(table.ids) + ([table.dontcare_id] if table.dontcare_id is not None else [])
    ids = rng.choice(valid, size=(2, 16, 16))
    ids.flat[: len(valid)] = valid  # every id at least once
    colors = table.colorize(ids)
    assert colors.dtype == np.uint8 and colors.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(colors[0, 3, 5], table.color_of(ids[0, 3, 5]))
    back = table.ids_from_colors(colors)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, ids)


def test_colorize_unknown_ids_are_magenta_and_dtypes():
    table = _table("synthetic")
    ids = np.array([[0, 7, 8], [-1, 255, 3]])
    colors = table.colorize(ids)
    np.testing.assert_array_equal(colors[0, 2], UNKNOWN_COLOR)
    np.testing.assert_array_equal(colors[1, 0], UNKNOWN_COLOR)
    np.testing.assert_array_equal(colors[1, 1], UNKNOWN_COLOR)  # no don't-care id here
    np.testing.assert_array_equal(colors[1, 2], table.color_of(3))
    for dtype in (np.uint8, np.uint16, np.int32, np.int64):
        np.testing.assert_array_equal(table.colorize(np.array([[6]], dtype=dtype))[0, 0],
                                      (210, 40, 40))
    assert table.colorize(np.zeros((0, 4), np.int32)).shape == (0, 4, 3)
    with pytest.raises(TypeError, match="integer"):
        table.colorize(np.zeros((2, 2), np.float32))
    assert table.legend(ids) == [
        (-1, "unknown id -1", UNKNOWN_COLOR), (0, "sky", (100, 190, 250)),
        (3, "road", (60, 55, 60)), (7, "person", (200, 60, 200)),
        (8, "unknown id 8", UNKNOWN_COLOR), (255, "unknown id 255", UNKNOWN_COLOR)]


def test_ids_from_colors_errors():
    table = _table("synthetic")
    image = table.colorize(np.array([[0, 1]]))
    image[0, 1] = (1, 2, 3)
    with pytest.raises(ClassTableError, match=r"#010203 \(1 pixels\)"):
        table.ids_from_colors(image)
    with pytest.raises(ClassTableError, match="uint8 RGB"):
        table.ids_from_colors(np.zeros((2, 2), np.uint8))
    # Cityscapes' class 0 is black, like a don't-care id would be
    shared = class_table("cityscapes", 35, 255)
    assert not shared.has_unique_colors
    with pytest.raises(ClassTableError, match="same colour.*#000000: ids 0, 255"):
        shared.ids_from_colors(np.zeros((1, 1, 3), np.uint8))
    np.testing.assert_array_equal(shared.colorize(np.array([255, 26])),
                                  [DONTCARE_COLOR, (0, 0, 142)])


# -- don't-care ---------------------------------------------------------------------------


def test_dontcare_id_is_named_and_black():
    table = class_table("", 20, 255)
    assert table.dontcare_id == 255 and table.name_of(255) == "don't care"
    assert table.color_of(255) == (0, 0, 0)
    np.testing.assert_array_equal(table.colorize(np.array([255, 19, 20, 254])),
                                  [(0, 0, 0), table.colors[19], UNKNOWN_COLOR, UNKNOWN_COLOR])
    np.testing.assert_array_equal(table.ids_from_colors(table.colorize(np.array([255, 3]))),
                                  [255, 3])
    assert class_table("", 20).dontcare_id is None
    assert class_table("ade20k", 151, 151).name_of(151) == "don't care"
    with pytest.raises(KeyError, match="id 21 is not in the class table"):
        table.name_of(21)
    with pytest.raises(ClassTableError, match="don't-care id 5 is not after the classes"):
        class_table("", 20, 5)
    with pytest.raises(ClassTableError, match="don't-care id"):
        ClassTable(names=("a", "b"), colors=((1, 1, 1), (2, 2, 2)), dontcare_id=1)


# -- generated palette --------------------------------------------------------------------


def test_generated_palette_is_distinct_and_stable():
    palette = generated_palette(256)
    assert palette.dtype == np.uint8 and palette.shape == (256, 3)
    assert len({tuple(c) for c in palette.tolist()}) == 256
    assert _rgb_distances(palette).min() >= 15
    assert _lab_distances(palette).min() >= 12  # CIELAB: clearly different to the eye
    assert _lab_distances(palette[:32]).min() >= 30
    np.testing.assert_array_equal(generated_palette(40), palette[:40])  # a prefix
    reserved = {DONTCARE_COLOR, UNKNOWN_COLOR}
    assert not reserved & {tuple(c) for c in generated_palette(classes.MAX_GENERATED).tolist()}
    assert generated_palette(0).shape == (0, 3)
    with pytest.raises(ClassTableError, match="at most 4094"):
        generated_palette(classes.MAX_GENERATED + 1)
    with pytest.raises(ClassTableError):
        generated_palette(-1)


def test_generated_table_numbers_its_classes():
    table = class_table("", 12)
    assert table.names == tuple(f"class {i}" for i in range(12))
    np.testing.assert_array_equal(table.palette, generated_palette(12))
    assert not table.palette.flags.writeable


# -- JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*sorted(DATASETS), ""])
def test_json_round_trip(name):
    table = class_table(name, *DATASETS.get(name, (30, 255)))
    text = table.to_json()
    data = json.loads(text)
    assert data["classes"][1] == {"id": 1, "name": table.names[1],
                                  "color": list(table.colors[1])}
    if table.dontcare_id is not None:
        assert data["dontcare"] == {"id": table.dontcare_id, "name": "don't care",
                                    "color": [0, 0, 0]}
    else:
        assert data["dontcare"] is None
    assert ClassTable.from_json(text) == table
    assert ClassTable.from_dict(table.to_dict()) == table


def test_json_errors():
    good = {"classes": [{"id": 1, "name": "b", "color": [0, 0, 1]},
                        {"id": 0, "name": "a", "color": [0, 0, 0]}]}
    assert ClassTable.from_dict(good).names == ("a", "b")  # any order
    cases = [
        ({"classes": "x"}, "a \"classes\" list"),
        ({"classes": [{"id": 1, "name": "b", "color": [0, 0, 1]}]}, "missing: 0"),
        ({"classes": [{"id": 0, "name": "a", "color": [0, 0, 0]}] * 2}, "listed twice"),
        ({"classes": [{"id": 0, "name": "a", "color": [0, 0, 256]}]}, r"classes\[0\].*0\.\.255"),
        ({"classes": [{"id": 0, "name": "", "color": [0, 0, 0]}]}, "non-empty"),
        ({"classes": [{"id": "0", "name": "a", "color": [0, 0, 0]}]}, "integer >= 0"),
        ({"classes": [{"id": 0, "name": "a", "color": [0, 0, 0]}], "dontcare": 3}, "dontcare"),
    ]
    for data, message in cases:
        with pytest.raises(ClassTableError, match=message):
            ClassTable.from_dict(data, "t.json")
    with pytest.raises(ClassTableError, match="t.json: not valid JSON"):
        ClassTable.from_json("{", "t.json")


def test_json_table_as_class_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(class_table("synthetic", 8).to_json())
    table = class_table(str(path), 8, 255)
    assert table.names == _table("synthetic").names and table.dontcare_id == 255
    with pytest.raises(ClassTableError, match="has 8 classes but the model has"):
        class_table(path, 9)


# -- user class files ---------------------------------------------------------------------


def _write(tmp_path, text, name="classes.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_names_file(tmp_path):
    path = _write(tmp_path, "\ufeff# my classes\n\nsky\n  traffic light  \nroad 128 64 128\n"
                            "grass #00ff00\n")
    table = class_table(str(path), 4)
    assert table.names == ("sky", "traffic light", "road", "grass")
    assert table.colors[2:] == ((128, 64, 128), (0, 255, 0))
    # the rest: the first generated colours the file does not give (#00ff00 is the first)
    spare = [tuple(c) for c in generated_palette(4).tolist() if tuple(c) not in table.colors[2:]]
    assert spare[0] == (255, 0, 0) and table.colors[:2] == tuple(spare[:2])
    assert "classes.txt" in table.source


def test_id_file_with_dontcare_line(tmp_path):
    path = _write(tmp_path, "2 car 0 0 142\n0 sky\n1 route 66\n255 unlabeled\n")
    table = class_table(path, 3, 255)
    assert table.names == ("sky", "route 66", "car")
    assert table.colors[2] == (0, 0, 142)
    assert (table.dontcare_name, table.dontcare_color) == ("unlabeled", DONTCARE_COLOR)
    path = _write(tmp_path, "0 a\n1 b\n255 void #102030\n", "dc.txt")
    assert class_table(path, 2, 255).color_of(255) == (16, 32, 48)


def test_given_colours_are_not_reused_for_the_rest(tmp_path):
    first = tuple(generated_palette(1)[0].tolist())
    path = _write(tmp_path, "0 a {} {} {}\n1 b\n".format(*first))
    table = class_table(path, 2)
    assert table.colors[0] == first and table.colors[1] != first
    assert table.has_unique_colors


@pytest.mark.parametrize("text, args, message", [
    ("sky\n1 road\n", (2,), r"classes.txt:2: '1 road' starts with an id but line 1 does not"),
    ("0 sky\nroad\n", (2,), r"classes.txt:2: 'road' does not start with an id but line 1"),
    ("0 a\n1 b\n2 c\n", (2,), r"classes.txt:3: id 2 is not a class id: expected 0\.\.1 \(the "
                              r"model has no don't-care id\)"),
    ("0 a\n1 b\n256 c\n", (2, 255), r":3: id 256 is not a class id: expected 0\.\.1 or the "
                                    r"don't-care id 255"),
    ("0 a\n0 b\n", (2,), r"classes.txt:2: id 0 is already named on line 1"),
    ("0 a\n2 c\n", (3,), r"names no class for ids 1: every id 0\.\.2 needs a line"),
    ("a\nb\n", (3,), r"names 2 classes, one per line, but the model has 3"),
    ("0 a 1 2 300\n", (1,), r"classes.txt:1: colour 1 2 300: each of r g b must be 0\.\.255"),
    ("0\n", (1,), r"classes.txt:1: '0' has no class name"),
    ("0 #ff0000\n", (1,), r"classes.txt:1: '0 #ff0000' has no class name"),
    ("# nothing\n\n", (1,), r"names no classes"),
])
def test_class_file_errors(tmp_path, text, args, message):
    path = _write(tmp_path, text)
    with pytest.raises(ClassTableError, match=message):
        class_table(path, *args)


def test_class_table_errors(tmp_path):
    with pytest.raises(ClassTableError, match=r"'ade20k' class table has 151 classes \(ids "
                                              r"0\.\.150\) but the model has num_classes=150"):
        class_table("ade20k", 150)
    with pytest.raises(ClassTableError, match="'synthetic' class table has 8 classes"):
        class_table("synthetic", 9)
    with pytest.raises(ClassTableError, match="expected one of 'ade20k'.*no such file"):
        class_table(str(tmp_path / "missing.txt"), 3)
    with pytest.raises(ClassTableError, match="expected a positive count"):
        class_table("", 0)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ClassTableError, match="cannot be read"):
        class_table(bad, 1)
    assert issubclass(ClassTableError, SpadeError) and issubclass(ClassTableError, ValueError)


def test_table_is_immutable_and_validated():
    table = ClassTable(names=("a", "b"), colors=np.array([[1, 2, 3], [4, 5, 6]], np.uint8))
    assert table.colors == ((1, 2, 3), (4, 5, 6)) and hash(table) == hash(
        ClassTable(names=("a", "b"), colors=((1, 2, 3), (4, 5, 6))))
    with pytest.raises(AttributeError):
        table.names = ("c",)
    with pytest.raises(ValueError):
        table.palette[0, 0] = 9
    with pytest.raises(ClassTableError, match="2 names but 1 colours"):
        ClassTable(names=("a", "b"), colors=((1, 2, 3),))
    with pytest.raises(ClassTableError, match="at least one class"):
        ClassTable(names=(), colors=())
