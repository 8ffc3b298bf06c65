"""mIoU counted class by class with boolean masks: the tests' independent computation."""

import numpy as np


def independent_miou(predicted, labels, num_classes: int) -> float:
    scores = []
    for cls in range(num_classes):
        union = np.logical_or(predicted == cls, labels == cls).sum()
        if union:
            scores.append(np.logical_and(predicted == cls, labels == cls).sum() / union)
    return float(np.mean(scores))
