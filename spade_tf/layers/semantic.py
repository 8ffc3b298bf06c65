"""Compact label maps -> the generator's semantic input, inside the graph.

The semantic input is the one-hot encoding of the label ids (``num_classes``
channels, plus one channel for the don't-care label when the dataset has one),
followed by an instance-edge channel when instance maps are used. Ids outside
the valid range stop the computation with an ``InvalidArgumentError`` that names
the offending id; they are never clamped or silently dropped (``tf.one_hot``
would return an all-zero vector for them). Which ids are valid, and how many channels
there are, is :class:`spade_tf.label_space.LabelSpace`'s to say.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from spade_tf.label_space import LabelSpace


def instance_edges(instance_ids):
    """1.0 where a pixel's instance id differs from any 4-neighbour, else 0.0.

    ``instance_ids``: [B, H, W] integers. Returns float32 [B, H, W, 1].
    """
    ids = tf.convert_to_tensor(instance_ids)
    horizontal = tf.not_equal(ids[:, :, 1:], ids[:, :, :-1])
    vertical = tf.not_equal(ids[:, 1:, :], ids[:, :-1, :])
    # A differing pair marks both of its pixels.
    before, after = [[0, 0], [0, 0], [1, 0]], [[0, 0], [0, 0], [0, 1]]
    edge = tf.pad(horizontal, before) | tf.pad(horizontal, after)
    above, below = [[0, 0], [1, 0], [0, 0]], [[0, 0], [0, 1], [0, 0]]
    edge |= tf.pad(vertical, above) | tf.pad(vertical, below)
    return tf.cast(edge, tf.float32)[..., tf.newaxis]


def check_label_ids(label_ids, num_classes: int, dontcare_label: int | None = None):
    """Return ``label_ids`` as int32 after asserting every id is valid.

    Valid ids are 0..num_classes-1, plus ``dontcare_label`` when given.
    """
    return check_label_space(label_ids, LabelSpace(num_classes, dontcare_label))


def check_label_space(label_ids, space: LabelSpace):
    """Return ``label_ids`` as int32 after asserting every id is in ``space``: in the
    graph, so a served model and the input pipeline stop on a bad map too."""
    ids = tf.cast(label_ids, tf.int32)
    valid = (ids >= 0) & (ids < space.num_classes)
    if space.dontcare_id is not None:
        valid |= tf.equal(ids, space.dontcare_id)
    bad_ids = tf.boolean_mask(ids, tf.logical_not(valid))
    check = tf.debugging.Assert(
        tf.reduce_all(valid),
        [f"label ids must be in {space.allowed_text}; found id", bad_ids[:1],
         "(occurrences:", tf.size(bad_ids), "). Check the class count of the model "
         "and of the label maps."],
        name="check_label_ids",
    )
    with tf.control_dependencies([check]):
        return tf.identity(ids)


def semantic_one_hot(
    label_ids,
    num_classes: int,
    use_dontcare_label: bool = False,
    dontcare_label: int = 255,
    instance_ids=None,
):
    """[B, H, W] ids (and instance ids) -> float32 [B, H, W, channels]."""
    space = LabelSpace.from_settings(num_classes, use_dontcare_label, dontcare_label)
    ids = check_label_space(label_ids, space)
    depth = space.num_classes
    if space.dontcare_id is not None:
        # The reference maps the don't-care id onto one extra channel after the classes.
        ids = tf.where(tf.equal(ids, space.dontcare_id), space.dontcare_channel, ids)
        depth += 1
    semantic = tf.one_hot(ids, depth, dtype=tf.float32)
    if instance_ids is not None:
        semantic = tf.concat([semantic, instance_edges(instance_ids)], axis=-1)
    return semantic


@keras.saving.register_keras_serializable(package="spade_tf")
class SemanticInput(keras.layers.Layer):
    """Integer label ids [B, H, W] (and instance ids) -> one-hot semantic map.

    Args:
        num_classes: number of real classes; valid ids are ``0..num_classes-1``.
        use_dontcare_label: whether ``dontcare_label`` is accepted and encoded as
            one extra channel after the classes.
        dontcare_label: the don't-care id (255 in the reference's datasets).
        use_instance_edges: whether ``call`` takes instance ids and appends their
            edge map as the last channel.
    """

    def __init__(
        self,
        num_classes: int,
        use_dontcare_label: bool = False,
        dontcare_label: int = 255,
        use_instance_edges: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Raises LabelSpaceError (a ValueError) for no classes or a don't-care class id.
        self.label_space = LabelSpace.from_settings(num_classes, use_dontcare_label,
                                                    dontcare_label, use_instance_edges)
        self.num_classes = num_classes
        self.use_dontcare_label = use_dontcare_label
        self.dontcare_label = dontcare_label
        self.use_instance_edges = use_instance_edges

    @property
    def channels(self) -> int:
        return self.label_space.semantic_channels

    def call(self, label_ids, instance_ids=None):
        if self.use_instance_edges and instance_ids is None:
            raise ValueError("this SemanticInput uses instance edges: pass instance_ids too.")
        if not self.use_instance_edges and instance_ids is not None:
            raise ValueError(
                "instance_ids were given but use_instance_edges=False; drop them or "
                "build the layer with use_instance_edges=True."
            )
        return semantic_one_hot(
            label_ids, self.num_classes, self.use_dontcare_label, self.dontcare_label,
            instance_ids,
        )

    def compute_output_shape(self, label_ids_shape, instance_ids_shape=None):
        return (*label_ids_shape, self.channels)

    def compute_output_spec(self, label_ids, instance_ids=None):
        return keras.KerasTensor((*label_ids.shape, self.channels), dtype="float32")

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "use_dontcare_label": self.use_dontcare_label,
            "dontcare_label": self.dontcare_label,
            "use_instance_edges": self.use_instance_edges,
        })
        return config
