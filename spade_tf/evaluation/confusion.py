"""Confusion matrix over a whole image set, and the mIoU / pixel accuracy read from it.

Rows are the label map's classes, columns the predicted ones; counts are int64 and
accumulate over every image before any ratio is taken (as the segmentation benchmarks
do: a per-image mean would weigh small images like large ones).

- IoU of class c: ``C[c, c] / (sum of row c + sum of column c - C[c, c])``;
- mIoU: the mean IoU over the classes present in the labels or the predictions (a class
  absent from both has no defined IoU);
- pixel accuracy: ``trace(C) / C.sum()``, the fraction of labelled pixels predicted right.

Pixels whose label is the ignore id (255 by default, the usual don't-care id) are left out.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spade_tf.evaluation.errors import EvaluationError


@dataclasses.dataclass(frozen=True)
class SegmentationScores:
    """What a confusion matrix says; ``class_iou`` lists the classes present only."""

    mean_iou: float
    pixel_accuracy: float
    class_iou: dict[int, float]
    num_pixels: int
    num_classes: int

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["class_iou"] = {str(cls): iou for cls, iou in self.class_iou.items()}
        return values


SEGMENTER_HINT = ("check --num-classes, the ignore id, or map the label ids to the "
                  "segmenter's (--label-mapping).")


class ConfusionMatrix:
    """Accumulates ``(label, prediction)`` pixel counts over image batches.

    With ``num_classes`` the ids must lie in ``0..num_classes-1`` (an id outside is an
    error naming it); without, the matrix grows to the largest id seen.
    """

    def __init__(self, num_classes: int | None = None, ignore_id: int | None = 255,
                 out_of_range_hint: str = SEGMENTER_HINT) -> None:
        if num_classes is not None and num_classes < 1:
            raise EvaluationError(f"num_classes must be a positive integer; got {num_classes}.")
        self.num_classes = num_classes
        self.ignore_id = ignore_id
        self.out_of_range_hint = out_of_range_hint
        self.matrix = np.zeros((num_classes or 0,) * 2, dtype=np.int64)

    def update(self, labels: np.ndarray, predictions: np.ndarray) -> None:
        """Add the pixels of label and prediction maps of the same shape (any batch)."""
        labels, predictions = np.asarray(labels), np.asarray(predictions)
        if labels.shape != predictions.shape:
            raise EvaluationError(f"label maps {labels.shape} and predictions "
                                  f"{predictions.shape} differ in shape.")
        for name, values in (("label", labels), ("prediction", predictions)):
            if not np.issubdtype(values.dtype, np.integer):
                raise EvaluationError(f"{name}s must be integer class ids; got {values.dtype}.")
        keep = labels != self.ignore_id if self.ignore_id is not None else np.ones_like(
            labels, dtype=bool)
        labels = labels[keep].astype(np.int64)
        predictions = predictions[keep].astype(np.int64)
        if labels.size == 0:
            return
        size = self._check_ids(labels, predictions)
        if size > self.matrix.shape[0]:
            grown = np.zeros((size, size), dtype=np.int64)
            grown[: self.matrix.shape[0], : self.matrix.shape[0]] = self.matrix
            self.matrix = grown
        counts = np.bincount(labels * size + predictions, minlength=size * size)
        self.matrix += counts.reshape(size, size)

    def _check_ids(self, labels: np.ndarray, predictions: np.ndarray) -> int:
        for name, values in (("label", labels), ("predicted", predictions)):
            low, high = int(values.min()), int(values.max())
            if low < 0:
                raise EvaluationError(f"{name} id {low} is negative; class ids start at 0.")
            if self.num_classes is not None and high >= self.num_classes:
                ignore = (f" (and the ignore id {self.ignore_id} for labels)"
                          if self.ignore_id is not None else "")
                raise EvaluationError(
                    f"{name} id {high} is outside the classes 0..{self.num_classes - 1}"
                    f"{ignore}; {self.out_of_range_hint}")
        return self.num_classes or max(int(labels.max()), int(predictions.max()),
                                       self.matrix.shape[0] - 1) + 1

    def scores(self) -> SegmentationScores:
        """mIoU and pixel accuracy so far; an error when no labelled pixel was seen."""
        total = int(self.matrix.sum())
        if total == 0:
            raise EvaluationError("no labelled pixels were scored (every label is the ignore "
                                  f"id {self.ignore_id}, or no image was given).")
        true_positives = np.diag(self.matrix)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - true_positives
        present = np.flatnonzero(union > 0)
        iou = true_positives[present] / union[present]
        return SegmentationScores(
            mean_iou=float(iou.mean()),
            pixel_accuracy=float(true_positives.sum() / total),
            class_iou={int(cls): float(value) for cls, value in zip(present, iou, strict=True)},
            num_pixels=total,
            num_classes=int(self.matrix.shape[0]),
        )
