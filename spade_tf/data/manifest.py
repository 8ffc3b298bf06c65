"""``manifest.json``: what a folder of TFRecord shards holds.

Written last (atomically) by ``spade-tfrecords convert``, so a folder with a manifest is
complete; read by the input pipeline and ``spade-tfrecords inspect``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from spade_tf.atomic import write_text
from spade_tf.data.schema import MANIFEST_FILE, SCHEMA_VERSION
from spade_tf.errors import SpadeError
from spade_tf.label_space import LabelSpace


class DataError(SpadeError, ValueError):
    """A dataset folder, shard or record is missing, corrupt or inconsistent."""


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    name: str
    num_examples: int
    num_bytes: int


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Counts, label rules and the shard list of a converted dataset."""

    dataset: str
    split: str
    num_examples: int
    num_classes: int
    dontcare_label: int | None
    has_instances: bool
    shards: tuple[ShardInfo, ...]
    skipped: tuple[dict, ...] = ()
    class_histogram: tuple[int, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # No classes, or a don't-care id among them: LabelSpaceError, a ValueError, which
        # read_manifest reports as a manifest that is not valid.
        LabelSpace(self.num_classes, self.dontcare_label)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> Manifest:
        values = dict(values)
        values["shards"] = tuple(ShardInfo(**shard) for shard in values["shards"])
        values["skipped"] = tuple(values.get("skipped", ()))
        values["class_histogram"] = tuple(values.get("class_histogram", ()))
        return cls(**values)

    def shard_paths(self, folder: str | os.PathLike) -> list[Path]:
        return [Path(folder) / shard.name for shard in self.shards]

    @property
    def label_space(self) -> LabelSpace:
        """The data's ids; ``uses_instance_edges``: the records carry instance maps."""
        return LabelSpace(self.num_classes, self.dontcare_label, self.has_instances)

    def check_label_settings(self, num_classes: int, use_dontcare_label: bool,
                             dontcare_label: int, use_instance_edges: bool,
                             source: str = "the model config") -> None:
        """Raise DataError when the data cannot feed a model with these settings."""
        self.check_label_space(LabelSpace.from_settings(
            num_classes, use_dontcare_label, dontcare_label, use_instance_edges), source)

    def check_label_space(self, model: LabelSpace, source: str = "the model config") -> None:
        """Raise DataError when the data cannot feed a model of label space ``model``."""
        problems = []
        if self.num_classes != model.num_classes:
            problems.append(f"the data has {self.num_classes} classes, {source} has "
                            f"num_classes={model.num_classes}")
        if self.dontcare_label is not None and model.dontcare_id != self.dontcare_label:
            problems.append(f"the data marks don't-care pixels with {self.dontcare_label}; "
                            f"set use_dontcare_label=true and dontcare_label="
                            f"{self.dontcare_label} in {source}")
        if model.uses_instance_edges and not self.has_instances:
            problems.append(f"{source} uses instance edges but the data has no instance maps "
                            "(set use_instance_edges=false or convert with instance maps)")
        if problems:
            raise DataError("; ".join(problems) + ".")


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """Read and check ``folder/manifest.json``."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise DataError(
            f"{folder} has no {MANIFEST_FILE}: it is not a converted dataset, or its "
            "conversion did not finish (run spade-tfrecords convert again)."
        )
    try:
        values = json.loads(path.read_text())
        manifest = Manifest.from_dict(values)
    except (ValueError, TypeError, KeyError) as error:
        raise DataError(f"{path} is not a valid manifest: {error}") from None
    if manifest.schema_version != SCHEMA_VERSION:
        raise DataError(
            f"{path} has schema version {manifest.schema_version}; this spade-tf reads "
            f"version {SCHEMA_VERSION}: convert the dataset again."
        )
    return manifest


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> Path:
    """Write the manifest atomically (:func:`spade_tf.atomic.write_text`)."""
    return write_text(Path(folder) / MANIFEST_FILE, manifest.to_json())


def check_shard_files(folder: str | os.PathLike, manifest: Manifest) -> list[Path]:
    """Every shard exists with the size the manifest records; returns their paths.

    A cheap check that catches missing and truncated shards before training starts.
    """
    paths = manifest.shard_paths(folder)
    for shard, path in zip(manifest.shards, paths, strict=True):
        if not path.is_file():
            raise DataError(f"shard {path} listed in the manifest is missing.")
        size = path.stat().st_size
        if size != shard.num_bytes:
            raise DataError(
                f"shard {path} has {size} bytes, the manifest records {shard.num_bytes}: it "
                "was truncated or modified; convert the dataset again."
            )
    return paths
