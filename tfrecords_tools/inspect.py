"""``spade-tfrecords inspect``: counts, sizes, classes, and a schema check of every record."""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path

import numpy as np


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _check_folder(folder: Path) -> None:
    """Say what a folder that cannot be inspected is, and what to run instead."""
    from spade_tf.data.manifest import DataError
    from spade_tf.data.schema import MANIFEST_FILE
    from tfrecords_tools.out_folder import STATE_FILE

    if not folder.exists():
        raise DataError(f"{folder} does not exist: give the --out folder of "
                        "spade-tfrecords convert.")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file: give the folder that spade-tfrecords convert "
                        "wrote (it holds manifest.json and the .tfrecord shards).")
    if (folder / MANIFEST_FILE).is_file():
        return
    if (folder / STATE_FILE).is_file():
        shards = len(list(folder.glob("*.tfrecord")))
        raise DataError(f"{folder} holds an unfinished conversion ({_plural(shards, 'shard')} "
                        "written, no manifest.json yet): run the same spade-tfrecords convert "
                        "command again to finish it.")
    raise DataError(f"{folder} is not a converted dataset (no manifest.json): give the --out "
                    "folder of spade-tfrecords convert.")


def _known_classes(manifest):
    """The packaged class table of the manifest's dataset (ADE20K, COCO-Stuff, Cityscapes),
    or None: a ``folders`` dataset's classes are known only to its user."""
    from spade_tf.classes import DATASET_TABLES, ClassTableError, class_table

    if manifest.dataset not in DATASET_TABLES:
        return None
    try:
        return class_table(manifest.dataset, manifest.num_classes, manifest.dontcare_label)
    except ClassTableError:  # an edited manifest: ids still say everything
        return None


def _class_label(class_id: int, table) -> str:
    return f"{class_id} {table.name_of(int(class_id))}" if table is not None else str(class_id)


@dataclasses.dataclass
class InspectionReport:
    num_examples: int
    image_sizes: collections.Counter
    class_histogram: np.ndarray  # pixels per class id; don't-care last
    examples_with_instances: int
    problems: list[str]

    def format(self, manifest) -> str:
        lines = [f"{manifest.dataset} {manifest.split}: {_plural(self.num_examples, 'example')}"
                 f" in {_plural(len(manifest.shards), 'shard')} (manifest: "
                 f"{manifest.num_examples})",
                 f"classes: {manifest.num_classes}"
                 + (f", don't-care id {manifest.dontcare_label}"
                    if manifest.dontcare_label is not None else "")
                 + "; non-empty instance maps in "
                 + _plural(self.examples_with_instances, "example")]
        sizes = ", ".join(f"{w}x{h} ({n})" for (h, w), n in self.image_sizes.most_common(5))
        lines.append(f"image sizes (most common): {sizes}")
        total = max(int(self.class_histogram.sum()), 1)
        table = _known_classes(manifest)
        top = np.argsort(self.class_histogram)[::-1][:10]
        names = [("don't-care" if c == manifest.num_classes else _class_label(c, table))
                 for c in top]
        lines.append("top classes by pixels: " + ", ".join(
            f"{name} {100 * self.class_histogram[c] / total:.1f}%"
            for name, c in zip(names, top, strict=True) if self.class_histogram[c]))
        if manifest.skipped:
            lines.append(f"skipped at conversion: {_plural(len(manifest.skipped), 'pair')}")
        count = len(self.problems)
        lines.append("schema check: " + ("OK" if not count else
                                         f"{count} problem{'' if count == 1 else 's'}"))
        lines += [f"  - {problem}" for problem in self.problems[:20]]
        return "\n".join(lines)


def inspect_dataset(folder: str | os.PathLike) -> tuple[object, InspectionReport]:
    """Read every record of a converted dataset; returns (manifest, report)."""
    import tensorflow as tf

    from spade_tf.data.manifest import DataError, check_shard_files, read_manifest
    from spade_tf.data.pipeline import record_error_text
    from spade_tf.data.schema import parse_example

    _check_folder(Path(folder))
    manifest = read_manifest(folder)
    problems: list[str] = []
    paths = manifest.shard_paths(folder)
    for shard in manifest.shards:
        # Each shard on its own (check_shard_files stops at the first bad one).
        try:
            check_shard_files(folder, dataclasses.replace(manifest, shards=(shard,)))
        except DataError as error:
            problems.append(str(error))
    sizes: collections.Counter = collections.Counter()
    space = manifest.label_space
    histogram = np.zeros(manifest.num_classes + 1, np.int64)
    count = with_instances = 0
    keys = set()
    parse = tf.function(lambda record: parse_example(record))
    for path, shard in zip(paths, manifest.shards, strict=True):
        if not path.is_file():
            continue
        in_shard = 0
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                example = parse(record)
                label = example["label"].numpy()
                key = example["key"].numpy().decode()
                if key in keys:
                    problems.append(f"{Path(path).name}: key {key} appears twice")
                keys.add(key)
                invalid = space.find_invalid(label)
                if invalid is not None:
                    problems.append(f"{Path(path).name}: {key} has label ids "
                                    f"{list(invalid.ids[:5])} out of range")
                histogram += space.class_counts(label)
                sizes[label.shape] += 1
                with_instances += int(bool(example["instance"].numpy().any()))
                in_shard += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            problems.append(f"shard {path} is corrupt after {_plural(in_shard, 'record')} "
                            f"({record_error_text(error.message)})")
        if in_shard != shard.num_examples:
            problems.append(f"shard {Path(path).name} holds {_plural(in_shard, 'record')}, "
                            f"the manifest says {shard.num_examples}")
        count += in_shard
    return manifest, InspectionReport(count, sizes, histogram, with_instances, problems)
