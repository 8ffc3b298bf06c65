"""Synthetic mIoU: classes read back from colours, scored like any segmentation."""

import numpy as np
import pytest
from support.scores import independent_miou

from spade_tf.evaluation import EvaluationError, synthetic_miou, synthetic_scores
from spade_tf.evaluation import synthetic as evaluation_synthetic
from spade_tf.inference_rules import to_uint8
from tfrecords_tools import synthetic


def test_the_class_table():
    assert synthetic.NUM_CLASSES == evaluation_synthetic.NUM_CLASSES == 8
    assert evaluation_synthetic.THING_CLASSES == (4, 5, 6, 7)
    np.testing.assert_array_equal(evaluation_synthetic.BASE_COLORS[6], [210, 40, 40])


def test_rendered_scenes_score_one_and_swapped_ones_match_a_direct_count():
    scenes = [synthetic.generate_scene(synthetic.scene_rng(3, i), 32) for i in range(3)]
    images = np.stack([s.image for s in scenes])
    labels = np.stack([s.label for s in scenes])
    perfect = synthetic_scores(images, labels)
    assert perfect.mean_iou == 1.0 and perfect.pixel_accuracy == 1.0
    swapped = images[[1, 2, 0]]
    predicted = np.stack([s.label for s in scenes])[[1, 2, 0]]  # exact: colours -> classes
    expected = independent_miou(predicted, labels, synthetic.NUM_CLASSES)
    assert synthetic_miou(swapped, labels) == pytest.approx(expected, rel=1e-12)
    assert synthetic_scores(swapped, labels).pixel_accuracy == pytest.approx(
        float(np.mean(predicted == labels)))


def test_float_generator_output_goes_through_the_export_rule():
    label = np.array([[0, 6], [6, 7]])
    colours = evaluation_synthetic.BASE_COLORS[label].astype(np.float32) / 127.5 - 1.0  # in [-1, 1]
    np.testing.assert_array_equal(to_uint8(colours), evaluation_synthetic.BASE_COLORS[label])
    assert synthetic_miou(to_uint8(colours), label) == 1.0
    np.testing.assert_array_equal(to_uint8(np.array([-2.0, -1.0, 0.0, 1.0, 3.0])),
                                  [0, 0, 128, 255, 255])


def test_size_mismatch_is_explained():
    with pytest.raises(EvaluationError, match="differ in size"):
        synthetic_miou(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8))


def test_label_ids_outside_the_synthetic_classes_are_explained():
    image = np.zeros((1, 4, 4, 3), np.uint8)
    with pytest.raises(EvaluationError, match="label id 20 is outside the classes 0..7; the "
                       "synthetic scenes have classes 0..7"):
        synthetic_scores(image, np.full((1, 4, 4), 20))
