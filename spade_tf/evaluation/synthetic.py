"""The synthetic scenes' classes, and their "synthetic mIoU" needing no network.

The procedural scenes of ``tfrecords_tools.synthetic`` paint each class in a base colour
plus a small texture and shade (at most ~31 grey levels away), while base colours lie more
than 100 apart; the class of a pixel is therefore its nearest base colour. A generated
image can be scored against the label map it came from without any segmentation network:
each generated pixel's class is read back from its colour (``classify_colors``) and the
confusion matrix gives mIoU and pixel accuracy, as ``spade-eval synthetic`` reports.

The classes are the packaged table ``spade_tf/class_tables/synthetic.json``, read like
every dataset's (:mod:`spade_tf.classes`); its ``"thing"`` marks the classes the scenes
draw as objects. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spade_tf.classes import packaged_table, packaged_table_data
from spade_tf.evaluation.confusion import ConfusionMatrix, SegmentationScores
from spade_tf.evaluation.errors import EvaluationError


@dataclass(frozen=True)
class SemanticClass:
    id: int
    name: str
    color: tuple[int, int, int]
    thing: bool


def _read_classes() -> tuple[SemanticClass, ...]:
    table = packaged_table("synthetic")  # checked: ids 0..N-1, names, colours
    things = {entry["id"]: entry.get("thing") is True
              for entry in packaged_table_data("synthetic")["classes"]}
    return tuple(SemanticClass(i, table.names[i], table.colors[i], things[i])
                 for i in table.ids)


CLASSES: tuple[SemanticClass, ...] = _read_classes()
NUM_CLASSES = len(CLASSES)
THING_CLASSES = tuple(c.id for c in CLASSES if c.thing)
BASE_COLORS = np.array([c.color for c in CLASSES], dtype=np.int32)


def classify_colors(image: np.ndarray) -> np.ndarray:
    """Class of each pixel of a uint8 [..., 3] image: its nearest base colour."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim < 1 or image.shape[-1] != 3:
        raise ValueError(f"image must be a uint8 [..., 3] array, got {image.dtype} "
                         f"{image.shape}")
    pixels = image.astype(np.int32)
    best = np.full(image.shape[:-1], np.iinfo(np.int32).max)
    label = np.zeros(image.shape[:-1], dtype=np.uint8)
    for cls, color in enumerate(BASE_COLORS):  # loop keeps memory at one [H, W]
        dist = ((pixels - color) ** 2).sum(axis=-1)
        closer = dist < best
        label[closer], best[closer] = cls, dist[closer]
    return label


def update_synthetic_confusion(confusion: ConfusionMatrix, images: np.ndarray,
                               labels: np.ndarray) -> None:
    """Add uint8 ``[..., H, W, 3]`` images read back by colour against their label maps."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.shape[:-1] != labels.shape:
        raise EvaluationError(f"images {images.shape} and label maps {labels.shape} differ in "
                              "size; score each image against the label map it was made from.")
    confusion.update(labels, classify_colors(images))


def synthetic_confusion() -> ConfusionMatrix:
    """An empty confusion matrix over the synthetic scenes' classes."""
    return ConfusionMatrix(NUM_CLASSES, ignore_id=None, out_of_range_hint=(
        f"the synthetic scenes have classes 0..{NUM_CLASSES - 1}: are these label maps from "
        "`spade-tfrecords synthetic` (its labels/ folder)?"))


def synthetic_scores(images: np.ndarray, labels: np.ndarray) -> SegmentationScores:
    """mIoU and pixel accuracy of uint8 images of synthetic scenes against their labels."""
    confusion = synthetic_confusion()
    update_synthetic_confusion(confusion, images, labels)
    return confusion.scores()


def synthetic_miou(images: np.ndarray, labels: np.ndarray) -> float:
    """Synthetic mIoU of uint8 ``[..., H, W, 3]`` images against ``[..., H, W]`` labels."""
    return synthetic_scores(images, labels).mean_iou
