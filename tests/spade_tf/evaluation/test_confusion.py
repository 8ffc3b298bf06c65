"""Confusion matrix, mIoU and pixel accuracy on hand-counted cases."""

import numpy as np
import pytest

from spade_tf.evaluation import ConfusionMatrix, EvaluationError


def test_hand_counted_example_with_ignore_id():
    labels = np.array([[0, 0, 1], [1, 2, 255]])
    predictions = np.array([[0, 1, 1], [1, 0, 2]])
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(labels, predictions)
    # rows: label, columns: prediction; the 255 pixel is left out.
    np.testing.assert_array_equal(confusion.matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    scores = confusion.scores()
    # IoU 0: 1 / (2 + 2 - 1); IoU 1: 2 / (2 + 3 - 2); IoU 2: 0 / (1 + 0 - 0)
    assert scores.class_iou == pytest.approx({0: 1 / 3, 1: 2 / 3, 2: 0.0})
    assert scores.mean_iou == pytest.approx(1 / 3)
    assert scores.pixel_accuracy == pytest.approx(3 / 5)
    assert scores.num_pixels == 5 and confusion.matrix.dtype == np.int64


def test_counts_accumulate_over_images_and_absent_classes_are_skipped():
    confusion = ConfusionMatrix(num_classes=5)
    confusion.update(np.array([[0, 0]]), np.array([[0, 0]]))
    confusion.update(np.array([[3, 3, 3, 3]]), np.array([[3, 3, 0, 0]]))
    scores = confusion.scores()
    # Whole-set counts: IoU 0 = 2 / (2 + 4 - 2), IoU 3 = 2 / (4 + 2 - 2); 1, 2, 4 absent.
    assert scores.class_iou == pytest.approx({0: 0.5, 3: 0.5})
    assert scores.pixel_accuracy == pytest.approx(4 / 6)


def test_matrix_grows_without_a_class_count():
    confusion = ConfusionMatrix(num_classes=None)
    confusion.update(np.array([1, 1]), np.array([1, 0]))
    confusion.update(np.array([4]), np.array([4]))
    assert confusion.matrix.shape == (5, 5)
    assert confusion.matrix[1, 0] == 1 and confusion.matrix[4, 4] == 1
    assert confusion.scores().class_iou == pytest.approx({0: 0.0, 1: 0.5, 4: 1.0})


def test_out_of_range_ids_and_empty_sets_are_explained():
    confusion = ConfusionMatrix(num_classes=3)
    with pytest.raises(EvaluationError, match="label id 7 is outside the classes 0..2"):
        confusion.update(np.array([7]), np.array([0]))
    with pytest.raises(EvaluationError, match="predicted id 3 is outside"):
        confusion.update(np.array([0]), np.array([3]))
    with pytest.raises(EvaluationError, match="differ in shape"):
        confusion.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    confusion.update(np.full((2, 2), 255), np.zeros((2, 2), int))
    with pytest.raises(EvaluationError, match="no labelled pixels"):
        confusion.scores()
