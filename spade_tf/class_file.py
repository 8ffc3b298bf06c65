"""Class files: the user's names (and colours) of a model's classes, in plain text.

Class files (UTF-8 text). Blank lines and lines starting with ``#`` are skipped. Either
every line holds a name, the n-th name being class n-1::

    sky
    traffic light 250 170 30

or every line starts with the class id::

    0 sky
    1 traffic light #faaa1e
    255 unlabeled

A line may end with a colour, three integers 0..255 (``r g b``) or ``#rrggbb``; classes
without one get :func:`~spade_tf.class_palette.generated_palette` colours in id order,
skipping colours the file gives. With ids, every id 0..num_classes-1 needs a line; a line
for the don't-care id renames it (and recolours it when it has a colour).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from spade_tf.class_palette import MAX_GENERATED, generated_palette
from spade_tf.class_table import (
    DONTCARE_COLOR,
    ClassTable,
    ClassTableError,
    Color,
    id_list_text,
)

_INT = re.compile(r"[+-]?\d+")
_HEX = re.compile(r"#([0-9a-fA-F]{6})")


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
                              f"{id_list_text(missing) or '0'}: every id 0..{count - 1} needs a "
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
