"""TensorFlow's error messages, cleaned for users."""

import pytest
import tensorflow as tf

from spade_tf.errors import readable_tf_message
from spade_tf.layers import semantic_one_hot


def test_an_in_graph_id_check_reads_as_a_sentence():
    dataset = tf.data.Dataset.from_tensors(tf.constant([[0, 9]])).map(
        lambda ids: semantic_one_hot(ids[tf.newaxis], 8))
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        next(iter(dataset))
    raw = caught.value.message
    assert "{{function_node" in raw or "[[{{node" in raw or "[Op:" in raw
    assert readable_tf_message(raw) == (
        "label ids must be in 0..7; found id 9 (occurrences: 1). Check the class count of "
        "the model and of the label maps.")


def test_messages_without_internals_are_kept():
    message = "label_ids must be [batch, 64, 64] (this model's image size); resize it first"
    assert readable_tf_message(message) == message


@pytest.mark.parametrize("details, readable", [
    ("{{function_node __wrapped__Foo}} assertion failed: [x is wrong] [Condition x == y did not "
     "hold element-wise:] [x (a:0) = ] [3] [y (b:0) = ] [4] [Op:Foo] name: ",
     "x is wrong (received 3)"),
    ("Servable not found for request: Latest(nope)", "Servable not found for request: "
                                                     "Latest(nope)"),
    ("assertion failed: [bad] [7]\n\t [[{{node check/Assert}}]]", "bad 7"),
])
def test_readable_details(details, readable):
    assert readable_tf_message(details) == readable
