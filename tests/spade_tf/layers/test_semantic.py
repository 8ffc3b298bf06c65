import numpy as np
import pytest
import tensorflow as tf
from support.contract import check_layer_contract

from spade_tf.layers import SemanticInput, instance_edges, semantic_one_hot


def test_one_hot_dontcare_and_edge_channels():
    labels = tf.constant([[[0, 1, 2], [255, 2, 0]]])
    instances = tf.constant([[[5, 5, 7], [5, 5, 7]]])
    semantic = SemanticInput(3, use_dontcare_label=True, use_instance_edges=True)(
        labels, instances).numpy()[0]
    assert semantic.shape == (2, 3, 5)
    np.testing.assert_array_equal(semantic[..., :4].argmax(-1), [[0, 1, 2], [3, 2, 0]])
    np.testing.assert_array_equal(semantic[..., :4].sum(-1), np.ones((2, 3)))
    # Column 1 and 2 differ in instance id: both sides of the boundary are edges.
    np.testing.assert_array_equal(semantic[..., 4], [[0, 1, 1], [0, 1, 1]])


def test_instance_edges_mark_every_4_neighbour_difference():
    ids = np.zeros((1, 5, 5), np.int32)
    ids[0, 2, 2] = 1
    edges = instance_edges(ids).numpy()[0, ..., 0]
    expected = np.zeros((5, 5))
    expected[2, 2] = expected[1, 2] = expected[3, 2] = expected[2, 1] = expected[2, 3] = 1
    np.testing.assert_array_equal(edges, expected)


@pytest.mark.parametrize("bad_id, dontcare", [(3, False), (-1, False), (255, False),
                                              (254, True), (3, True)])
def test_out_of_range_ids_fail_with_the_id_in_the_message(bad_id, dontcare):
    labels = tf.constant([[[0, bad_id], [1, 2]]])
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        semantic_one_hot(labels, 3, use_dontcare_label=dontcare)
    message = str(error.value)
    assert "label ids must be in 0..2" in message
    assert str(bad_id) in message


def test_out_of_range_ids_fail_inside_a_tf_function():
    layer = SemanticInput(4)
    run = tf.function(lambda ids: layer(ids))
    assert run(tf.constant([[[3]]])).shape == (1, 1, 1, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="found id"):
        run(tf.constant([[[4]]]))


def test_instance_argument_must_match_the_layer():
    with pytest.raises(ValueError, match="pass instance_ids"):
        SemanticInput(3, use_instance_edges=True)(tf.zeros((1, 2, 2), tf.int32))
    with pytest.raises(ValueError, match="use_instance_edges=False"):
        SemanticInput(3)(tf.zeros((1, 2, 2), tf.int32), tf.zeros((1, 2, 2), tf.int32))
    with pytest.raises(ValueError, match="num_classes=0"):
        SemanticInput(0)


def test_contract(tmp_path):
    labels = tf.constant(np.random.randint(0, 5, (2, 6, 6)), tf.int32)
    instances = tf.constant(np.random.randint(0, 3, (2, 6, 6)), tf.int32)
    check_layer_contract(lambda: SemanticInput(5, use_instance_edges=True),
                         (labels, instances), tmp_path, expected_trainable_weights=0,
                         expected_output_shape=(2, 6, 6, 6))
