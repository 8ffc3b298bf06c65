"""The label space: valid ids, the don't-care id, channels, and how a bad map is worded."""

import numpy as np
import pytest

from spade_tf.config import ModelConfig
from spade_tf.errors import SpadeError
from spade_tf.label_space import MAX_LABEL_ID, LabelSpace, LabelSpaceError


def test_channels_and_settings_of_each_construction():
    coco = ModelConfig(num_classes=182, use_dontcare_label=True, use_instance_edges=True)
    space = LabelSpace.from_model(coco)
    assert space == coco.label_space == LabelSpace(182, 255, True)
    assert (space.semantic_channels, space.dontcare_channel) == (184, 182)
    assert space.semantic_channels == coco.semantic_channels
    # Without use_dontcare_label the don't-care id (255 by default) is no id at all.
    assert ModelConfig(num_classes=35).label_space == LabelSpace(35)
    metadata = {"num_classes": 8, "use_dontcare_label": False, "dontcare_label": 255,
                "use_instance_edges": True, "image_size": [64, 64]}
    assert LabelSpace.from_metadata(metadata) == LabelSpace(8, None, True)
    assert LabelSpace.from_metadata(metadata).semantic_channels == 9


def test_valid_ids_and_the_allowed_text():
    space = LabelSpace(3, dontcare_id=255)
    ids = np.array([[0, 2, 3], [255, -1, 254]])
    np.testing.assert_array_equal(space.valid_mask(ids), [[1, 1, 0], [1, 0, 0]])
    assert [space.is_valid_id(i) for i in (0, 2, 3, 255)] == [True, True, False, True]
    assert not space.is_class_id(255)
    assert space.allowed_text == "0..2 or 255 (don't-care)"
    assert LabelSpace(35).allowed_text == "0..34"
    assert space.find_invalid(np.array([[0, 255]])) is None


def test_a_bad_map_is_worded_once():
    bad = LabelSpace(8).find_invalid(np.array([[9, 9, 0], [12, 1, 9]], np.uint16))
    assert (bad.ids, bad.pixels) == ((9, 12), 4)
    assert bad.message("labels/a.png", "check the label map") == (
        "labels/a.png has label ids [9, 12] outside 0..7 (4 pixels); check the label map.")
    assert bad.message("a.png", limit=1) == "a.png has label ids [9] outside 0..7 (4 pixels)."


def test_class_counts_put_dont_care_last():
    counts = LabelSpace(3, 255).class_counts(np.array([[0, 0, 2], [255, 255, 1]]))
    assert counts.tolist() == [2, 1, 1, 2]


@pytest.mark.parametrize("args, words", [
    ((0,), "num_classes=0: expected a positive class count"),
    ((True,), "num_classes=True"),
    ((3, 1), r"dontcare_label=1 is also a class id \(0..2\): use an id outside the classes"),
    ((3, 2.0), "dontcare_label=2.0: expected an integer id"),
])
def test_impossible_spaces_are_refused(args, words):
    with pytest.raises(LabelSpaceError, match=words) as error:
        LabelSpace(*args)
    assert isinstance(error.value, SpadeError) and isinstance(error.value, ValueError)


def test_ids_are_16_bit():
    assert MAX_LABEL_ID == 65535
