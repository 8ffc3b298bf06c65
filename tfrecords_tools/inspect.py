"""``spade-tfrecords inspect``: counts, sizes, classes, and a schema check of every record."""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path

import numpy as np


@dataclasses.dataclass
class InspectionReport:
    num_examples: int
    image_sizes: collections.Counter
    class_histogram: np.ndarray  # pixels per class id; don't-care last
    examples_with_instances: int
    problems: list[str]

    def format(self, manifest) -> str:
        lines = [f"{manifest.dataset} {manifest.split}: {self.num_examples} examples in "
                 f"{len(manifest.shards)} shards (manifest: {manifest.num_examples})",
                 f"classes: {manifest.num_classes}"
                 + (f", don't-care id {manifest.dontcare_label}"
                    if manifest.dontcare_label is not None else "")
                 + f"; non-empty instance maps in {self.examples_with_instances} examples"]
        sizes = ", ".join(f"{w}x{h} ({n})" for (h, w), n in self.image_sizes.most_common(5))
        lines.append(f"image sizes (most common): {sizes}")
        total = max(int(self.class_histogram.sum()), 1)
        top = np.argsort(self.class_histogram)[::-1][:10]
        names = [("don't-care" if c == manifest.num_classes else str(c)) for c in top]
        lines.append("top classes by pixels: " + ", ".join(
            f"{name} {100 * self.class_histogram[c] / total:.1f}%"
            for name, c in zip(names, top, strict=True) if self.class_histogram[c]))
        if manifest.skipped:
            lines.append(f"skipped at conversion: {len(manifest.skipped)} pairs")
        lines.append("schema check: " + ("OK" if not self.problems else
                                         f"{len(self.problems)} problems"))
        lines += [f"  - {problem}" for problem in self.problems[:20]]
        return "\n".join(lines)


def inspect_dataset(folder: str | os.PathLike) -> tuple[object, InspectionReport]:
    """Read every record of a converted dataset; returns (manifest, report)."""
    import tensorflow as tf

    from spade_tf.data.manifest import DataError, check_shard_files, read_manifest
    from spade_tf.data.schema import parse_example

    manifest = read_manifest(folder)
    problems: list[str] = []
    try:
        paths = check_shard_files(folder, manifest)
    except DataError as error:
        problems.append(str(error))
        paths = [p for p in manifest.shard_paths(folder) if p.is_file()]
    sizes: collections.Counter = collections.Counter()
    histogram = np.zeros(manifest.num_classes + 1, np.int64)
    count = with_instances = 0
    keys = set()
    parse = tf.function(lambda record: parse_example(record))
    for path, shard in zip(paths, manifest.shards, strict=False):
        in_shard = 0
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                example = parse(record)
                label = example["label"].numpy()
                key = example["key"].numpy().decode()
                if key in keys:
                    problems.append(f"{Path(path).name}: key {key} appears twice")
                keys.add(key)
                valid = label < manifest.num_classes
                if manifest.dontcare_label is not None:
                    valid |= label == manifest.dontcare_label
                if not valid.all():
                    problems.append(f"{Path(path).name}: {key} has label ids "
                                    f"{np.unique(label[~valid])[:5].tolist()} out of range")
                histogram += np.bincount(np.minimum(label, manifest.num_classes).ravel(),
                                         minlength=manifest.num_classes + 1)
                sizes[label.shape] += 1
                with_instances += int(bool(example["instance"].numpy().any()))
                in_shard += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            problems.append(f"shard {path} is corrupt after {in_shard} records: "
                            f"{error.message.splitlines()[0]}")
        if in_shard != shard.num_examples:
            problems.append(f"shard {Path(path).name} holds {in_shard} records, the manifest "
                            f"says {shard.num_examples}")
        count += in_shard
    return manifest, InspectionReport(count, sizes, histogram, with_instances, problems)
