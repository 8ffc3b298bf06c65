"""Which label ids a model or a dataset uses: the one definition of the label space.

A label space is ``num_classes`` classes with ids ``0..num_classes-1``, optionally a
don't-care id outside them (255 in the reference's datasets), and whether instance maps
add an edge channel. Everything that checks ids or counts channels asks a
:class:`LabelSpace`: the conversion's checks, the input pipeline's and the exported
graph's in-graph check (:mod:`spade_tf.layers.semantic`), synthesis, the model config's
``semantic_channels``. Numpy only (no TensorFlow).

Build one from a model config (``LabelSpace.from_model(config.model)``, or
``config.model.label_space``), from an export's metadata
(``LabelSpace.from_metadata(metadata)``), or directly
(``LabelSpace(182, dontcare_id=255)``). ``find_invalid(ids)`` says which ids of a map are
outside it; its :meth:`InvalidIds.message` is the wording of a bad map::

    labels/a.png has label ids [40] outside 0..34 (48 pixels); check the label map.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from spade_tf.errors import SpadeError

#: The largest id a label or instance map can hold: they are stored as 16-bit PNGs.
MAX_LABEL_ID = 2**16 - 1
#: How many of the bad ids a message lists.
LISTED_IDS = 8


class LabelSpaceError(SpadeError, ValueError):
    """A label space that cannot be: no classes, or a don't-care id that is a class id."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class InvalidIds:
    """The ids of a map that a label space does not have."""

    ids: tuple[int, ...]  # each bad id once, ascending
    pixels: int  # how many pixels hold one of them
    allowed: str  # the label space's ids, as LabelSpace.allowed_text words them

    def message(self, where: str, hint: str = "", limit: int = LISTED_IDS) -> str:
        """``"<where> has label ids [9, 12] outside 0..7 (5 pixels); <hint>."``"""
        text = (f"{where} has label ids {list(self.ids[:limit])} outside {self.allowed} "
                f"({self.pixels} pixels)")
        return text + (f"; {hint}." if hint else ".")


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """Classes ``0..num_classes-1``, the don't-care id (None: none) and instance edges.

    Raises :class:`LabelSpaceError` for fewer than one class or a don't-care id that is
    also a class id.
    """

    num_classes: int
    dontcare_id: int | None = None
    uses_instance_edges: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.num_classes) or self.num_classes < 1:
            raise LabelSpaceError(f"num_classes={self.num_classes!r}: expected a positive "
                                  "class count.")
        object.__setattr__(self, "num_classes", int(self.num_classes))
        dontcare = self.dontcare_id
        if dontcare is not None:
            if not _is_int(dontcare):
                raise LabelSpaceError(f"dontcare_label={dontcare!r}: expected an integer id "
                                      "outside the classes, usually 255.")
            if 0 <= dontcare < self.num_classes:
                raise LabelSpaceError(
                    f"dontcare_label={dontcare} is also a class id ({self.class_ids_text}): "
                    "use an id outside the classes, usually 255.")
            object.__setattr__(self, "dontcare_id", int(dontcare))
        object.__setattr__(self, "uses_instance_edges", bool(self.uses_instance_edges))

    # -- construction from the settings every model carries ---------------------------

    @classmethod
    def from_settings(cls, num_classes: int, use_dontcare_label: bool = False,
                      dontcare_label: int = 255,
                      use_instance_edges: bool = False) -> LabelSpace:
        """From the four settings as configs, layers and exports spell them."""
        return cls(num_classes, dontcare_label if use_dontcare_label else None,
                   use_instance_edges)

    @classmethod
    def from_model(cls, model: Any) -> LabelSpace:
        """From anything with ``num_classes``, ``use_dontcare_label``, ``dontcare_label``
        and ``use_instance_edges`` attributes (a ``ModelConfig``, a ``ModelInfo``)."""
        return cls.from_settings(model.num_classes, model.use_dontcare_label,
                                 model.dontcare_label, model.use_instance_edges)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> LabelSpace:
        """From an export's metadata (``spade_model.json``, the ``model_info`` signature):
        the keys ``num_classes``, ``use_dontcare_label``, ``dontcare_label`` and
        ``use_instance_edges``."""
        return cls.from_settings(metadata["num_classes"], metadata["use_dontcare_label"],
                                 metadata["dontcare_label"], metadata["use_instance_edges"])

    # -- the settings back, and the channels -------------------------------------------

    @property
    def use_dontcare_label(self) -> bool:
        return self.dontcare_id is not None

    @property
    def dontcare_channel(self) -> int | None:
        """The one-hot channel of the don't-care id: the one after the classes."""
        return None if self.dontcare_id is None else self.num_classes

    @property
    def semantic_channels(self) -> int:
        """Channels of the generator's semantic input: classes, don't-care, edges."""
        return self.num_classes + int(self.use_dontcare_label) + int(self.uses_instance_edges)

    # -- which ids are valid -------------------------------------------------------------

    @property
    def class_ids_text(self) -> str:
        """``"0..N-1"``."""
        return f"0..{self.num_classes - 1}"

    @property
    def allowed_text(self) -> str:
        """The valid ids in words: ``"0..181 or 255 (don't-care)"``, ``"0..34"``."""
        if self.dontcare_id is None:
            return self.class_ids_text
        return f"{self.class_ids_text} or {self.dontcare_id} (don't-care)"

    def is_class_id(self, label_id: int) -> bool:
        return 0 <= label_id < self.num_classes

    def is_valid_id(self, label_id: int) -> bool:
        """A class id or the don't-care id."""
        return self.is_class_id(label_id) or (self.dontcare_id is not None
                                              and label_id == self.dontcare_id)

    def valid_mask(self, ids: Any) -> np.ndarray:
        """bool array of ``ids``' shape: True where the id is a class or the don't-care id."""
        ids = np.asarray(ids)
        valid = (ids >= 0) & (ids < self.num_classes)
        if self.dontcare_id is not None:
            valid |= ids == self.dontcare_id
        return valid

    def find_invalid(self, ids: Any) -> InvalidIds | None:
        """The ids of an integer map outside this space, or None when every id is valid."""
        ids = np.asarray(ids)
        valid = self.valid_mask(ids)
        if valid.all():
            return None
        invalid = ~valid
        return InvalidIds(tuple(int(i) for i in np.unique(ids[invalid])), int(invalid.sum()),
                          self.allowed_text)

    def class_counts(self, ids: Any) -> np.ndarray:
        """int64 [num_classes + 1]: pixels per class id, the don't-care id last. Ids above
        the classes count as don't-care, so check the map first (``find_invalid``)."""
        ids = np.asarray(ids)
        return np.bincount(np.minimum(ids, self.num_classes).ravel(),
                           minlength=self.num_classes + 1)
