"""A class table: names and display colours of label ids 0..N-1 and of the don't-care id.

Every consumer that shows a label map takes its names and colours from a
:class:`ClassTable` (:mod:`spade_tf.classes` gives each dataset's, and a model's, with
``class_table()``), so a class looks the same everywhere. Numpy and json only.

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
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from spade_tf.errors import SpadeError
from spade_tf.label_space import LabelSpace

Color = tuple[int, int, int]

DONTCARE_NAME = "don't care"
DONTCARE_COLOR: Color = (0, 0, 0)
#: Colour of ids that are neither a class nor the don't-care id.
UNKNOWN_COLOR: Color = (255, 0, 255)


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


def id_list_text(ids: Iterable[int], limit: int = 10) -> str:
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
    def label_space(self) -> LabelSpace:
        """The ids this table names: classes 0..N-1 and the don't-care id."""
        return LabelSpace(len(self.names), self.dontcare_id)

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
                                  f"missing; missing: {id_list_text(missing) or 'all'}.")
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
