"""What an export says about its model: the schema of ``assets.extra/spade_model.json``.

One owner for the keys that ``spade-export`` writes, the ``model_info`` signature returns,
and ``spade-synthesize``, ``spade-serve`` (batch limits, log lines) and the painter page
(serving/painter/painter.js) read. The file is flat JSON (TF Serving clients and the painter
read it as is); ``schema_version`` grows when a key changes meaning or goes away (adding a
key does not change it). Files written before the field existed are version 1.
TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from spade_tf.errors import SpadeError
from spade_tf.label_space import LabelSpace
from spade_tf.layout import WEIGHTS

SCHEMA_VERSION = 1


class MetadataError(SpadeError, ValueError):
    """An export's metadata is missing keys, has wrong types, or is from a newer release."""


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
    """The model behind one export version, as its clients need it."""

    model_name: str
    version: int
    image_size: tuple[int, int]  # (height, width) of every label map and image
    num_classes: int
    use_dontcare_label: bool
    dontcare_label: int
    use_instance_edges: bool
    use_vae: bool
    latent_dim: int
    max_batch_size: int
    max_pixels: int  # the largest style image a request may carry
    precision: str  # the compute type of the served graph (spade_tf.precision)
    signatures: tuple[str, ...]
    classes: dict[str, Any] | None  # spade_tf.classes.ClassTable.to_dict(); None: numbered
    # The generator exported: "ema" (the average of its weights kept while training) or
    # "raw" (as trained; what files written before the key existed hold).
    weights: str = "raw"
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of_model(cls, config: Any, **export: Any) -> ExportMetadata:
        """The metadata of an export of a model folder whose settings are ``config`` (a
        :class:`~spade_tf.config.Config`): what the model takes from it, and ``export``'s
        keys (model_name, version, max_batch_size, max_pixels, precision, signatures,
        weights) from the export."""
        model = config.model
        return cls(image_size=tuple(model.image_size), num_classes=model.num_classes,
                   use_dontcare_label=model.use_dontcare_label,
                   dontcare_label=model.dontcare_label,
                   use_instance_edges=model.use_instance_edges, use_vae=model.use_vae,
                   latent_dim=model.latent_dim, classes=config.classes().to_dict(), **export)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["image_size"] = list(self.image_size)
        data["signatures"] = list(self.signatures)
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any, where: str = "model metadata") -> ExportMetadata:
        """Read ``data`` (parsed JSON); a missing key, a wrong type or a newer schema is a
        :class:`MetadataError` naming ``where`` and the key."""
        if not isinstance(data, dict):
            raise MetadataError(f"{where} is not a JSON object.")
        schema = data.get("schema_version", 1)
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise MetadataError(f"{where} has schema_version {schema!r}, newer than this "
                                f"spade-tf reads ({SCHEMA_VERSION}): upgrade spade-tf.")
        values = {}
        for field in dataclasses.fields(cls):
            if field.name == "schema_version":
                continue
            if field.name not in data and field.default is not dataclasses.MISSING:
                continue  # a key added later: older files take its default
            if field.name not in data:
                raise MetadataError(f"{where} has no {field.name!r}: was it written by "
                                    "spade-export?")
            values[field.name] = data[field.name]
        values["image_size"] = _pair(values["image_size"], where)
        values["signatures"] = tuple(values["signatures"])
        if values.get("weights", "raw") not in WEIGHTS:
            allowed = " or ".join(repr(name) for name in WEIGHTS)
            raise MetadataError(f"{where}: weights must be {allowed}, not "
                                f"{values['weights']!r}.")
        for name in ("version", "num_classes", "dontcare_label", "latent_dim",
                     "max_batch_size", "max_pixels"):
            if isinstance(values[name], bool) or not isinstance(values[name], int):
                raise MetadataError(f"{where}: {name} must be an integer, not "
                                    f"{values[name]!r}.")
        return cls(**values, schema_version=schema)

    @classmethod
    def read(cls, path: str | os.PathLike) -> ExportMetadata:
        """Read a ``spade_model.json`` file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise MetadataError(f"cannot read {path}: {error}") from None
        return cls.from_dict(data, str(path))

    @property
    def label_space(self) -> LabelSpace:
        return LabelSpace.from_model(self)

    def class_table(self):
        """The classes (names and colours), numbered ones when the export has none."""
        from spade_tf.classes import ClassTable, class_table

        if self.classes:
            return ClassTable.from_dict(self.classes)
        return class_table("", self.num_classes, self.label_space.dontcare_id)


def _pair(value: Any, where: str) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(side, int) and side > 0 for side in value)):
        raise MetadataError(f"{where}: image_size must be [height, width], not {value!r}.")
    return int(value[0]), int(value[1])


# The keys the painter reads from model_info (tests check painter.js reads no others).
PAINTER_KEYS = ("image_size", "num_classes", "use_dontcare_label", "dontcare_label",
                "use_instance_edges", "use_vae", "signatures", "classes")
