"""The classes of each dataset, by label id: names and display colours, one table for all.

Every consumer that shows a label map (image grids, the HTML index, TensorBoard, the painter
page, clients) takes its names and colours from a :class:`ClassTable`, so a class looks
the same everywhere. Numpy and json only (no TensorFlow).

``class_table(name_or_path, num_classes, dontcare_label)`` gives the table of a model:

- ``"ade20k"``, ``"coco_stuff"``, ``"cityscapes"``: the tables in ``class_tables/*.json``
  (package data), each citing its source in its ``"source"`` field. Ids are the ones the
  project stores (see README.md, "Preparing data"): ADE20K 0..150 (0 "other"), COCO-Stuff
  0..181 (255 don't-care), Cityscapes 0..34 (34 "license plate", never in gtFine maps).
- ``"synthetic"``: the demo's procedural scenes (``class_tables/synthetic.json``, whose
  ``"thing"`` marks the classes drawn as objects), which ``tfrecords_tools.synthetic``
  draws and ``spade_tf.evaluation.synthetic`` reads back.
- ``""``: classes ``"class 0"``, ``"class 1"`` ... in :func:`generated_palette` colours.
- anything else: the path of the user's class file (:mod:`spade_tf.class_file` gives the
  format), or of a ``.json`` table as :meth:`ClassTable.to_json` writes it. To name a file
  called like a table, write ``./ade20k``.

The table must have exactly ``num_classes`` classes (ids 0..num_classes-1). With a
don't-care id (``dontcare_label``, which must not be a class id) the table also names it:
``"don't care"``, shown black.

The parts: :mod:`spade_tf.class_table` (the :class:`ClassTable`, its colouring and JSON),
:mod:`spade_tf.class_palette` (generated colours), :mod:`spade_tf.class_file` (class
files); this module names the tables and re-exports the parts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from spade_tf.class_file import read_class_file
from spade_tf.class_palette import (
    MAX_GENERATED,
    RESERVED_COLORS,
    generated_palette,
    generated_table,
)
from spade_tf.class_table import (
    DONTCARE_COLOR,
    DONTCARE_NAME,
    UNKNOWN_COLOR,
    ClassTable,
    ClassTableError,
    Color,
)

__all__ = [
    "DATASET_TABLES", "DONTCARE_COLOR", "DONTCARE_NAME", "MAX_GENERATED", "PACKAGED_TABLES",
    "RESERVED_COLORS", "TABLES_DIR", "TABLE_NAMES", "UNKNOWN_COLOR", "ClassTable",
    "ClassTableError", "Color", "class_table", "generated_palette", "generated_table",
    "packaged_table", "packaged_table_data", "read_class_file",
]

TABLES_DIR = Path(__file__).resolve().parent / "class_tables"
#: Tables of the datasets shipped as ``class_tables/<name>.json``.
DATASET_TABLES = ("ade20k", "coco_stuff", "cityscapes")
#: Every table shipped as ``class_tables/<name>.json``: the datasets' and the demo's.
PACKAGED_TABLES = (*DATASET_TABLES, "synthetic")
#: Every name ``class_table`` knows ("" is the generated palette).
TABLE_NAMES = (*PACKAGED_TABLES, "")


@functools.cache
def _packaged_text(name: str) -> str:
    path = TABLES_DIR / f"{name}.json"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ClassTableError(f"the {name} class table {path} cannot be read ({error}); "
                              "is the package installed with its class_tables data?") from None


def packaged_table_data(name: str) -> dict[str, Any]:
    """The parsed JSON of ``class_tables/<name>.json``, extra keys (``"source_color"``,
    ``"thing"``) included; :func:`packaged_table` is the checked table."""
    try:
        return json.loads(_packaged_text(name))
    except json.JSONDecodeError as error:
        raise ClassTableError(f"{TABLES_DIR / f'{name}.json'}: not valid JSON ({error}).") \
            from None


@functools.cache
def packaged_table(name: str) -> ClassTable:
    """The table ``class_tables/<name>.json`` (``name`` one of ``PACKAGED_TABLES``) as it
    is, whatever the model: :func:`class_table` checks it against one."""
    return ClassTable.from_dict(packaged_table_data(name), str(TABLES_DIR / f"{name}.json"))


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
    if name in PACKAGED_TABLES:
        table = packaged_table(name)
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
