"""Segmentation scores with tiny SavedModels that classify pixels by colour."""

import json

import numpy as np
import pytest

from spade_tf.evaluation import EvaluationError
from spade_tf.evaluation.evaluate import evaluate_segmentation
from spade_tf.evaluation.segmentation import (
    INPUT_RANGES,
    Segmenter,
    SegmenterError,
    apply_label_mapping,
    read_label_mapping,
)

IGNORE = 255


def _scene(rng, palette, size=8):
    """Image of 2x2 blocks in palette colours; labels = the blocks' classes, with some
    blocks relabelled (wrong) and a few pixels ignored."""
    blocks = rng.integers(0, len(palette), (size // 2, size // 2))
    classes = np.kron(blocks, np.ones((2, 2), np.int64))
    labels = classes.copy()
    wrong = rng.random(classes.shape) < 0.25
    labels[wrong] = (classes[wrong] + 1) % len(palette)
    labels[rng.random(classes.shape) < 0.1] = IGNORE
    return palette[classes], classes, labels


def _expected(predicted, labels, num_classes):
    """Confusion counts, mIoU and accuracy computed directly from the pixel maps."""
    valid = labels != IGNORE
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels[valid], predicted[valid]), 1)
    ious = []
    for cls in range(num_classes):
        tp = np.sum((labels == cls) & (predicted == cls) & valid)
        union = np.sum(((labels == cls) | (predicted == cls)) & valid)
        if union:
            ious.append(tp / union)
    return matrix, float(np.mean(ious)), float(np.mean(predicted[valid] == labels[valid]))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, palette, write_pngs):
    rng = np.random.default_rng(0)
    made = [_scene(rng, palette) for _ in range(5)]
    root = tmp_path_factory.mktemp("segmentation")
    names = [f"img_{i}" for i in range(5)]
    pairs = list(zip(names, made, strict=True))
    write_pngs(root / "generated", {name: m[0] for name, m in pairs})
    write_pngs(root / "labels", {name: m[2].astype(np.uint8) for name, m in pairs})
    predicted = np.stack([m[1] for m in made])
    labels = np.stack([m[2] for m in made])
    return root, predicted, labels


@pytest.mark.parametrize("kind, input_range", [("logits", "0-255"), ("ids", "0-255"),
                                               ("float01", "0-1")])
def test_scores_match_a_direct_count(segmenters, scenes, palette, kind, input_range):
    root, predicted, labels = scenes
    result = evaluate_segmentation(root / "generated", root / "labels", segmenters[kind],
                                   num_classes=len(palette), input_range=input_range,
                                   batch_size=2)
    matrix, miou, accuracy = _expected(predicted, labels, len(palette))
    assert result.num_images == 5
    assert result.scores.mean_iou == pytest.approx(miou, rel=1e-12)
    assert result.scores.pixel_accuracy == pytest.approx(accuracy, rel=1e-12)
    assert result.scores.num_pixels == int(matrix.sum())


def test_segmenter_output_kinds(segmenters, palette):
    images = palette[np.kron(np.array([[[0, 1], [2, 3]]]), np.ones((2, 2), np.int64))]
    expected = np.kron(np.array([[[0, 1], [2, 3]]]), np.ones((2, 2), np.int64))
    for kind, input_range in (("logits", "0-255"), ("ids", "0-255"), ("float01", "0-1")):
        ids = Segmenter(segmenters[kind], input_range)(images.astype(np.uint8), (4, 4))
        np.testing.assert_array_equal(ids, expected)
        assert ids.dtype == np.int64
    # Logits are resized to the label size before the arg-max: 8x8 labels of 4x4 images.
    upscaled = Segmenter(segmenters["logits"])(images.astype(np.uint8), (8, 8))
    np.testing.assert_array_equal(upscaled, np.kron(expected, np.ones((2, 2), np.int64)))


def test_wrong_input_range_changes_the_answer(segmenters, scenes):
    root, _, _ = scenes
    right = evaluate_segmentation(root / "generated", root / "labels", segmenters["float01"],
                                  input_range="0-1")
    wrong = evaluate_segmentation(root / "generated", root / "labels", segmenters["float01"],
                                  input_range="0-255")  # every pixel looks white-ish
    assert wrong.scores.pixel_accuracy < right.scores.pixel_accuracy


def test_float_input_ranges():
    pixels = np.array([0.0, 127.5, 255.0])
    for name, expected in (("0-255", [0, 127.5, 255]), ("0-1", [0, 0.5, 1]),
                           ("minus1-1", [-1, 0, 1])):
        scale, offset = INPUT_RANGES[name]
        np.testing.assert_allclose(pixels * scale + offset, expected)


def test_label_mapping_rewrites_ids_and_ignores_the_rest(tmp_path):
    (tmp_path / "map.json").write_text(json.dumps({"7": 0, "8": 1}))
    mapping = read_label_mapping(tmp_path / "map.json")
    assert mapping == {7: 0, 8: 1}
    np.testing.assert_array_equal(apply_label_mapping(np.array([[7, 8, 3, 255]]), mapping, 255),
                                  [[0, 1, 255, 255]])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(EvaluationError, match="label id -> segmenter class id"):
        read_label_mapping(tmp_path / "bad.json")


def test_interface_errors(segmenters, scenes, tmp_path, palette):
    root, _, _ = scenes
    with pytest.raises(SegmenterError, match="not a SavedModel folder"):
        Segmenter(tmp_path)
    with pytest.raises(SegmenterError, match="only applies to float inputs"):
        Segmenter(segmenters["ids"], input_range="0-1")
    with pytest.raises(EvaluationError, match="id 3 is outside the classes 0..2"):
        evaluate_segmentation(root / "generated", root / "labels", segmenters["ids"],
                              num_classes=3)
