"""The classes of each dataset, by label id: names and display colours, one table for all.

Every consumer that shows a label map (image grids, the HTML index, TensorBoard, the painter
page, clients) takes its names and colours from a :class:`ClassTable`, so a class looks
the same everywhere. Numpy and json only (no TensorFlow).

``class_table(name_or_path, num_classes, dontcare_label)`` gives the table of a model:

- ``"ade20k"``, ``"coco_stuff"``, ``"cityscapes"``: the tables in ``class_tables/*.json``
  (package data), each citing its source in its ``"source"`` field. Ids are the ones the
  project stores (see README.md, "Preparing data"): ADE20K 0..150 (0 "other"), COCO-Stuff
  0..181 (255 don't-care), Cityscapes 0..34 (34 "license plate", never in gtFine maps).
- ``"synthetic"``: the demo's procedural scenes, ``spade_tf.evaluation.synthetic.CLASSES``.
- ``""``: classes ``"class 0"``, ``"class 1"`` ... in :func:`generated_palette` colours.
- anything else: the path of the user's class file (below), or of a ``.json`` table as
  :meth:`ClassTable.to_json` writes it. To name a file called like a table, write
  ``./ade20k``.

The table must have exactly ``num_classes`` classes (ids 0..num_classes-1). With a
don't-care id (``dontcare_label``, which must not be a class id) the table also names it:
``"don't care"``, shown black.

Class files (UTF-8 text). Blank lines and lines starting with ``#`` are skipped. Either
every line holds a name, the n-th name being class n-1::

    sky
    traffic light 250 170 30

or every line starts with the class id::

    0 sky
    1 traffic light #faaa1e
    255 unlabeled

A line may end with a colour, three integers 0..255 (``r g b``) or ``#rrggbb``; classes
without one get :func:`generated_palette` colours in id order, skipping colours the file
gives. With ids, every id 0..num_classes-1 needs a line; a line for the don't-care id
renames it (and recolours it when it has a colour).

Colouring (:meth:`ClassTable.colorize`): an id that is neither a class nor the don't-care
id is shown in ``UNKNOWN_COLOR``, magenta (255, 0, 255), never an error, so a bad label map
still shows where it is bad. ADE20K's palette also gives magenta to id 80 "hovel".
:meth:`ClassTable.ids_from_colors` inverts colouring for tables whose colours are unique
(the built-in tables' are; the Cityscapes and ADE20K tables change the few official colours
that two classes share, keeping the official ones as ``source_color`` in their JSON).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from spade_tf.errors import SpadeError

Color = tuple[int, int, int]

TABLES_DIR = Path(__file__).resolve().parent / "class_tables"
#: Tables shipped as ``class_tables/<name>.json``.
DATASET_TABLES = ("ade20k", "coco_stuff", "cityscapes")
#: Every name ``class_table`` knows ("" is the generated palette).
TABLE_NAMES = (*DATASET_TABLES, "synthetic", "")
DONTCARE_NAME = "don't care"
DONTCARE_COLOR: Color = (0, 0, 0)
#: Colour of ids that are neither a class nor the don't-care id.
UNKNOWN_COLOR: Color = (255, 0, 255)
#: Colours that ``generated_palette`` keeps away from (don't-care and unknown ids).
RESERVED_COLORS: tuple[Color, ...] = (DONTCARE_COLOR, UNKNOWN_COLOR)
_GRID_LEVELS = 16  # generated colours come from a 16 x 16 x 16 grid of the RGB cube
MAX_GENERATED = _GRID_LEVELS ** 3 - len(RESERVED_COLORS)

_INT = re.compile(r"[+-]?\d+")
_HEX = re.compile(r"#([0-9a-fA-F]{6})")


class ClassTableError(SpadeError, ValueError):
    """A class table or class file that cannot be used; the message names the file (and
    line) and says what was expected."""


def _color(value: Any, where: str) -> Color:
    """(r, g, b) of three integers 0..255, or a ClassTableError naming ``where``."""
    try:
        items = list(value)
    except TypeError:
        items = None
    if (items is None or len(items) != 3 or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= 255
            for v in items)):
        raise ClassTableError(f"{where}: a colour is three integers 0..255 (r, g, b), "
                              f"got {value!r}.")
    return (int(items[0]), int(items[1]), int(items[2]))


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
        raise ClassTableError(f"{where}: a class name is a non-empty line of text, "
                              f"got {value!r}.")
    return value.strip()


def _hex(color: Color) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _id_list(ids: Iterable[int], limit: int = 10) -> str:
    ids = sorted(ids)
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f" ... ({len(ids)} in all)" if len(ids) > limit else "")


@dataclasses.dataclass(frozen=True)
class ClassTable:
    """Names and display colours of classes 0..N-1, and of the don't-care id if any.

    ``colors`` may be given as any [N, 3] sequence or uint8 array; it is kept as a tuple
    of (r, g, b) tuples (the table is immutable and hashable). ``palette`` is the same as a
    read-only uint8 [N, 3] array.
    """

    names: tuple[str, ...]
    colors: tuple[Color, ...]
    source: str = ""
    dontcare_id: int | None = None
    dontcare_name: str = DONTCARE_NAME
    dontcare_color: Color = DONTCARE_COLOR

    def __post_init__(self):
        names = tuple(_name(n, f"class {i}") for i, n in enumerate(self.names))
        colors = tuple(_color(c, f"class {i}") for i, c in enumerate(np.asarray(
            self.colors).tolist() if isinstance(self.colors, np.ndarray) else self.colors))
        if not names:
            raise ClassTableError("a class table needs at least one class.")
        if len(colors) != len(names):
            raise ClassTableError(f"a class table needs one colour per class: {len(names)} "
                                  f"names but {len(colors)} colours.")
        dontcare = self.dontcare_id
        if dontcare is not None:
            if isinstance(dontcare, bool) or not isinstance(dontcare, (int, np.integer)) \
                    or dontcare < len(names):
                raise ClassTableError(
                    f"don't-care id {dontcare!r}: expected an integer id after the classes "
                    f"(>= {len(names)}), e.g. 255.")
            dontcare = int(dontcare)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)
        object.__setattr__(self, "source", str(self.source))
        object.__setattr__(self, "dontcare_id", dontcare)
        object.__setattr__(self, "dontcare_name", _name(self.dontcare_name, "don't-care"))
        object.__setattr__(self, "dontcare_color", _color(self.dontcare_color, "don't-care"))

    # -- look-ups ---------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def ids(self) -> range:
        """The class ids, 0..N-1 (the don't-care id is not one)."""
        return range(len(self.names))

    @functools.cached_property
    def palette(self) -> np.ndarray:
        """uint8 [N, 3]: row k is the colour of class k (read-only)."""
        palette = np.array(self.colors, dtype=np.uint8).reshape(-1, 3)
        palette.flags.writeable = False
        return palette

    def name_of(self, class_id: int) -> str:
        """Name of a class or of the don't-care id; KeyError for any other id."""
        return self._entry(class_id, self.names, self.dontcare_name)

    def color_of(self, class_id: int) -> Color:
        """Colour of a class or of the don't-care id; KeyError for any other id."""
        return self._entry(class_id, self.colors, self.dontcare_color)

    def _entry(self, class_id: int, per_class: tuple, dontcare_value):
        class_id = int(class_id)
        if 0 <= class_id < len(per_class):
            return per_class[class_id]
        if class_id == self.dontcare_id:
            return dontcare_value
        raise KeyError(f"id {class_id} is not in the class table (classes 0.."
                       f"{len(self.names) - 1}{self._dontcare_text()}).")

    def _dontcare_text(self) -> str:
        return "" if self.dontcare_id is None else f", don't-care {self.dontcare_id}"

    # -- colouring --------------------------------------------------------------------

    @functools.cached_property
    def _lookup(self) -> np.ndarray:
        """uint8 [L + 1, 3]: ids 0..L-1 -> colour (unknown ones magenta), row L magenta."""
        size = len(self.names) if self.dontcare_id is None else self.dontcare_id + 1
        lookup = np.empty((size + 1, 3), dtype=np.uint8)
        lookup[:] = UNKNOWN_COLOR
        lookup[: len(self.names)] = self.palette
        if self.dontcare_id is not None:
            lookup[self.dontcare_id] = self.dontcare_color
        lookup.flags.writeable = False
        return lookup

    def colorize(self, label_ids: Any) -> np.ndarray:
        """uint8 [..., 3] colours of an integer map of ids of any shape ([H, W], [B, H, W]).

        Ids that are neither a class nor the don't-care id get ``UNKNOWN_COLOR``."""
        ids = np.asarray(label_ids)
        if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"label ids must be an integer array, got dtype {ids.dtype}.")
        lookup = self._lookup
        last = lookup.shape[0] - 1
        if ids.size and (ids.min() < 0 or ids.max() >= last):
            ids = np.where((ids >= 0) & (ids < last), ids, last)
        return lookup[ids]

    @functools.cached_property
    def _color_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted 24-bit colour keys and the ids they stand for (colours must be unique)."""
        colors = list(self.colors)
        ids = list(self.ids)
        if self.dontcare_id is not None:
            colors.append(self.dontcare_color)
            ids.append(self.dontcare_id)
        owners: dict[Color, list[int]] = {}
        for class_id, color in zip(ids, colors, strict=True):
            owners.setdefault(color, []).append(class_id)
        shared = {c: i for c, i in owners.items() if len(i) > 1}
        if shared:
            text = "; ".join(f"{_hex(c)}: ids {', '.join(map(str, i))}"
                             for c, i in list(shared.items())[:5])
            raise ClassTableError(f"this class table gives several ids the same colour "
                                  f"({text}), so colours cannot be read back as ids; give "
                                  "each class its own colour.")
        keys = np.array([(r << 16) | (g << 8) | b for r, g, b in colors], dtype=np.int64)
        order = np.argsort(keys)
        return keys[order], np.array(ids, dtype=np.int64)[order]

    @property
    def has_unique_colors(self) -> bool:
        """Whether every class (and the don't-care id) has a colour of its own."""
        colors = list(self.colors)
        if self.dontcare_id is not None:
            colors.append(self.dontcare_color)
        return len(set(colors)) == len(colors)

    def ids_from_colors(self, image: Any) -> np.ndarray:
        """int32 [...] ids of a uint8 [..., 3] image painted in this table's colours: the
        inverse of ``colorize`` for valid ids. ClassTableError for a colour of no class (or
        when two classes share a colour)."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim < 1 or image.shape[-1] != 3:
            raise ClassTableError(f"expected a uint8 RGB image [..., 3], got {image.dtype} "
                                  f"{image.shape}.")
        keys, ids = self._color_keys
        pixels = image.astype(np.int64)
        pixel_keys = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
        where = np.clip(np.searchsorted(keys, pixel_keys), 0, len(keys) - 1)
        found = keys[where] == pixel_keys
        if not found.all():
            unknown, counts = np.unique(pixel_keys[~found], return_counts=True)
            text = ", ".join(f"#{k:06x} ({n} pixels)" for k, n in zip(unknown[:5], counts[:5],
                                                                       strict=True))
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ClassTableError(f"the image has colours of no class: {text}{more}; paint "
                                  "with the class table's colours only (no smoothing or "
                                  "JPEG).")
        return ids[where].astype(np.int32)

    def legend(self, label_ids: Any) -> list[tuple[int, str, Color]]:
        """(id, name, colour) of each id present in a map, in id order; ids of no class
        are listed as ``"unknown id N"`` in ``UNKNOWN_COLOR``."""
        present = np.unique(np.asarray(label_ids))
        entries = []
        for class_id in present.tolist():
            try:
                entries.append((class_id, self.name_of(class_id), self.color_of(class_id)))
            except KeyError:
                entries.append((class_id, f"unknown id {class_id}", UNKNOWN_COLOR))
        return entries

    # -- JSON -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """``{"source", "classes": [{"id", "name", "color"}, ...], "dontcare"}`` where
        ``dontcare`` is ``{"id", "name", "color"}`` or None."""
        dontcare = None
        if self.dontcare_id is not None:
            dontcare = {"id": self.dontcare_id, "name": self.dontcare_name,
                        "color": list(self.dontcare_color)}
        return {
            "source": self.source,
            "classes": [{"id": i, "name": n, "color": list(c)}
                        for i, (n, c) in enumerate(zip(self.names, self.colors, strict=True))],
            "dontcare": dontcare,
        }

    def to_json(self) -> str:
        """The table as JSON text (``to_dict``), one class per line."""
        data = self.to_dict()
        classes = ",\n    ".join(json.dumps(c) for c in data["classes"])
        return ("{\n  \"source\": " + json.dumps(data["source"]) + ",\n  \"classes\": [\n    "
                + classes + "\n  ],\n  \"dontcare\": " + json.dumps(data["dontcare"]) + "\n}\n")

    @classmethod
    def from_dict(cls, data: Any, where: str = "class table") -> ClassTable:
        """The table of ``to_dict``'s format (entries may list classes in any order and
        carry extra keys such as ``source_color``); ``where`` names it in errors."""
        if not isinstance(data, Mapping) or not isinstance(data.get("classes"), list):
            raise ClassTableError(f"{where}: expected an object with a \"classes\" list of "
                                  "{\"id\", \"name\", \"color\"} entries.")
        by_id: dict[int, tuple[str, Color]] = {}
        for index, entry in enumerate(data["classes"]):
            at = f"{where}: classes[{index}]"
            if not isinstance(entry, Mapping):
                raise ClassTableError(f"{at}: expected {{\"id\", \"name\", \"color\"}}, "
                                      f"got {entry!r}.")
            class_id = entry.get("id")
            if isinstance(class_id, bool) or not isinstance(class_id, int) or class_id < 0:
                raise ClassTableError(f"{at}: \"id\" must be an integer >= 0, got "
                                      f"{class_id!r}.")
            if class_id in by_id:
                raise ClassTableError(f"{at}: id {class_id} is listed twice.")
            by_id[class_id] = (_name(entry.get("name"), at), _color(entry.get("color"), at))
        missing = set(range(len(by_id))) - set(by_id)
        if not by_id or missing:
            raise ClassTableError(f"{where}: the classes must have ids 0..N-1 with none "
                                  f"missing; missing: {_id_list(missing) or 'all'}.")
        dontcare = data.get("dontcare")
        extra: dict[str, Any] = {}
        if dontcare is not None:
            if not isinstance(dontcare, Mapping):
                raise ClassTableError(f"{where}: \"dontcare\" must be null or "
                                      f"{{\"id\", \"name\", \"color\"}}, got {dontcare!r}.")
            extra = {"dontcare_id": dontcare.get("id"),
                     "dontcare_name": _name(dontcare.get("name", DONTCARE_NAME),
                                            f"{where}: dontcare"),
                     "dontcare_color": _color(dontcare.get("color", DONTCARE_COLOR),
                                              f"{where}: dontcare")}
        source = data.get("source", "")
        if not isinstance(source, str):
            raise ClassTableError(f"{where}: \"source\" must be a string, got {source!r}.")
        try:
            return cls(names=tuple(by_id[i][0] for i in range(len(by_id))),
                       colors=tuple(by_id[i][1] for i in range(len(by_id))),
                       source=source, **extra)
        except ClassTableError as error:
            raise ClassTableError(f"{where}: {error}") from None

    @classmethod
    def from_json(cls, text: str, where: str = "class table") -> ClassTable:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ClassTableError(f"{where}: not valid JSON ({error}).") from None
        return cls.from_dict(data, where)


# -- generated palette ----------------------------------------------------------------


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours [..., 3] in 0..255, to measure how different they look."""
    c = rgb / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805],
                             [0.2126, 0.7152, 0.0722],
                             [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


@functools.lru_cache(maxsize=32)
def _generated(n: int) -> np.ndarray:
    levels = np.round(np.linspace(0, 255, _GRID_LEVELS)).astype(np.int64)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    lab = _lab(grid.astype(np.float64))
    nearest = np.full(len(grid), np.inf)
    for reserved in RESERVED_COLORS:  # start as if black and magenta were taken
        nearest = np.minimum(nearest, ((lab - _lab(np.array(reserved, float))) ** 2).sum(-1))
    chosen = []
    for _ in range(n):  # farthest point first: each colour is the one least like the others
        pick = int(np.argmax(nearest))  # ties: the first in grid order, so it is repeatable
        chosen.append(pick)
        nearest = np.minimum(nearest, ((lab - lab[pick]) ** 2).sum(-1))
        nearest[pick] = -1.0
    palette = grid[chosen].astype(np.uint8)
    palette.flags.writeable = False
    return palette


def generated_palette(n: int) -> np.ndarray:
    """uint8 [n, 3]: n distinct, well separated colours, the same for every run.

    Colours are picked one by one from a 16-level RGB grid, each the one least like (in
    CIELAB) those already picked, black (don't-care) and magenta (unknown ids); so the
    first colours are the most different, and ``generated_palette(k)`` is the start of
    ``generated_palette(n)`` for k < n. At most ``MAX_GENERATED`` (4094) colours."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ClassTableError(f"a palette needs a count >= 0, got {n!r}.")
    if n > MAX_GENERATED:
        raise ClassTableError(f"generated palettes have at most {MAX_GENERATED} colours, "
                              f"{n} asked; give the colours in a class file instead.")
    return _generated(int(n))


def generated_table(num_classes: int, source: str = "") -> ClassTable:
    """Classes "class 0" ... "class N-1" in ``generated_palette`` colours."""
    return ClassTable(names=tuple(f"class {i}" for i in range(num_classes)),
                      colors=generated_palette(num_classes),
                      source=source or f"generated: {num_classes} numbered classes, "
                                       "spade_tf.classes.generated_palette colours")


# -- the tables -----------------------------------------------------------------------


@functools.cache
def _packaged(name: str) -> ClassTable:
    path = TABLES_DIR / f"{name}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ClassTableError(f"the {name} class table {path} cannot be read ({error}); "
                              "is the package installed with its class_tables data?") from None
    return ClassTable.from_json(text, str(path))


def _synthetic() -> ClassTable:
    from spade_tf.evaluation.synthetic import CLASSES  # numpy only; imported when asked

    return ClassTable(names=tuple(c.name for c in CLASSES),
                      colors=tuple(c.color for c in CLASSES),
                      source="the demo's procedural scenes: spade_tf.evaluation.synthetic."
                             "CLASSES (names and base colours)")


def _split_color(tokens: list[str], at: str) -> tuple[list[str], Color | None]:
    """The tokens of a line without its trailing colour, and that colour (or None)."""
    match = _HEX.fullmatch(tokens[-1]) if tokens else None
    if match:
        value = int(match.group(1), 16)
        return tokens[:-1], ((value >> 16) & 255, (value >> 8) & 255, value & 255)
    if len(tokens) >= 4 and all(_INT.fullmatch(t) for t in tokens[-3:]):
        values = [int(t) for t in tokens[-3:]]
        if any(not 0 <= v <= 255 for v in values):
            raise ClassTableError(f"{at}: colour {' '.join(tokens[-3:])}: each of r g b must "
                                  "be 0..255.")
        return tokens[:-3], (values[0], values[1], values[2])
    return tokens, None


def read_class_file(path: str | os.PathLike, num_classes: int | None = None,
                    dontcare_label: int | None = None) -> ClassTable:
    """The table of a class file (format in the module docstring) or of a ``.json`` table.

    With ``num_classes`` the file must name exactly classes 0..num_classes-1; a line for
    ``dontcare_label`` (id format) names the don't-care id."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ClassTableError(f"class file {path} cannot be read ({error}).") from None
    if path.suffix.lower() == ".json":
        table = ClassTable.from_json(text, str(path))
        if dontcare_label is not None and table.dontcare_id is None:
            table = dataclasses.replace(table, dontcare_id=dontcare_label)
        return table

    entries: list[tuple[int, int, str, Color | None]] = []  # line, id, name, colour
    with_ids: bool | None = None
    first_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        at = f"{path}:{number}"
        tokens = line.split()
        has_id = bool(_INT.fullmatch(tokens[0]))
        if with_ids is None:
            with_ids, first_line = has_id, number
        elif has_id != with_ids:
            raise ClassTableError(
                f"{at}: {line!r} {'starts' if has_id else 'does not start'} with an id but "
                f"line {first_line} {'does not' if has_id else 'does'}: write every line as "
                "'ID NAME [COLOUR]' or every line as 'NAME [COLOUR]'.")
        if has_id:
            class_id, tokens = int(tokens[0]), tokens[1:]
        else:
            class_id = len(entries)
        tokens, color = _split_color(tokens, at)
        if not tokens:
            raise ClassTableError(f"{at}: {line!r} has no class name; expected "
                                  f"{'ID NAME [COLOUR]' if has_id else 'NAME [COLOUR]'}, "
                                  "e.g. '3 traffic light' or '3 traffic light 250 170 30'.")
        entries.append((number, class_id, " ".join(tokens), color))
    if not entries:
        raise ClassTableError(f"class file {path} names no classes: expected one line per "
                              "class, 'NAME' or 'ID NAME' (optionally followed by a colour).")

    if not with_ids and num_classes is not None and len(entries) != num_classes:
        raise ClassTableError(f"class file {path} names {len(entries)} classes, one per line, "
                              f"but the model has {num_classes} (ids 0..{num_classes - 1}).")
    classes: dict[int, tuple[str, Color | None]] = {}
    lines: dict[int, int] = {}
    dontcare: tuple[str, Color | None] | None = None
    for number, class_id, name, color in entries:
        at = f"{path}:{number}"
        if with_ids and class_id == dontcare_label and dontcare_label is not None:
            dontcare = (name, color)
            continue
        if class_id < 0 or (num_classes is not None and class_id >= num_classes):
            allowed = ("0.." + str(num_classes - 1)) if num_classes is not None else ">= 0"
            dc = (f" or the don't-care id {dontcare_label}" if dontcare_label is not None
                  else " (the model has no don't-care id)")
            raise ClassTableError(f"{at}: id {class_id} is not a class id: expected "
                                  f"{allowed}{dc}.")
        if class_id in classes:
            raise ClassTableError(f"{at}: id {class_id} is already named on line "
                                  f"{lines[class_id]}.")
        classes[class_id], lines[class_id] = (name, color), number
    count = num_classes if num_classes is not None else (max(classes) + 1 if classes else 0)
    missing = set(range(count)) - set(classes)
    if missing or not classes:
        raise ClassTableError(f"class file {path} names no class for ids "
                              f"{_id_list(missing) or '0'}: every id 0..{count - 1} needs a "
                              "line 'ID NAME'.")

    given = {c for _, c in classes.values() if c is not None}
    spare = (tuple(int(v) for v in c) for c in generated_palette(
        min(MAX_GENERATED, count + len(given))))
    colors = []
    for class_id in range(count):
        color = classes[class_id][1]
        if color is None:
            color = next((c for c in spare if c not in given), None)
            if color is None:
                raise ClassTableError(f"class file {path}: too many classes without a colour "
                                      f"for the generated palette ({MAX_GENERATED} at most).")
        colors.append(color)
    extra = {}
    if dontcare_label is not None:
        extra = {"dontcare_id": dontcare_label}
        if dontcare is not None:
            extra["dontcare_name"] = dontcare[0]
            extra["dontcare_color"] = dontcare[1] or DONTCARE_COLOR
    try:
        return ClassTable(names=tuple(classes[i][0] for i in range(count)),
                          colors=tuple(colors), source=f"class file {path}", **extra)
    except ClassTableError as error:
        raise ClassTableError(f"class file {path}: {error}") from None


def class_table(name_or_path: str | os.PathLike, num_classes: int,
                dontcare_label: int | None = None) -> ClassTable:
    """The class table of a model with ``num_classes`` classes (ids 0..num_classes-1) and
    the don't-care id ``dontcare_label`` (None: none). ``name_or_path`` is one of
    ``TABLE_NAMES`` or a class file's path (see the module docstring)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ClassTableError(f"num_classes {num_classes!r}: expected a positive count.")
    num_classes = int(num_classes)
    if dontcare_label is not None:
        if isinstance(dontcare_label, bool) or not isinstance(dontcare_label,
                                                              (int, np.integer)):
            raise ClassTableError(f"don't-care id {dontcare_label!r}: expected an integer.")
        if dontcare_label < num_classes:
            raise ClassTableError(
                f"don't-care id {dontcare_label} is not after the classes (0.."
                f"{num_classes - 1}): expected an id >= {num_classes}, e.g. 255.")
        dontcare_label = int(dontcare_label)

    name = os.fspath(name_or_path)
    if name in DATASET_TABLES or name == "synthetic":
        table = _packaged(name) if name in DATASET_TABLES else _synthetic()
        if table.num_classes != num_classes:
            raise ClassTableError(
                f"the {name!r} class table has {table.num_classes} classes (ids 0.."
                f"{table.num_classes - 1}) but the model has num_classes={num_classes}: "
                f"use the dataset's own config (configs/{name}.yaml), or a class file "
                "naming your classes.")
    elif name == "":
        table = generated_table(num_classes)
    elif Path(name).is_file():
        table = read_class_file(name, num_classes, dontcare_label)
        if table.num_classes != num_classes:  # a .json table
            raise ClassTableError(f"class table {name} has {table.num_classes} classes but "
                                  f"the model has num_classes={num_classes}.")
    else:
        known = ", ".join(repr(n) for n in TABLE_NAMES)
        raise ClassTableError(f"class table {name!r}: expected one of {known} or the path of "
                              "a class file, and no such file exists.")
    if table.dontcare_id != dontcare_label:
        table = dataclasses.replace(table, dontcare_id=dontcare_label)
    return table
