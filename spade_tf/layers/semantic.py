"""Compact label maps -> the generator's semantic input, inside the graph.

The semantic input is the one-hot encoding of the label ids (``num_classes``
channels, plus one channel for the don't-care label when the dataset has one),
followed by an instance-edge channel when instance maps are used. Ids outside
the valid range stop the computation with an error that names the offending id
(TensorFlow: ``InvalidArgumentError``, also inside graphs; JAX and PyTorch: how
:func:`spade_tf.backend.check_ids` says); they are never clamped or silently dropped
(a one-hot of them would be an all-zero vector). Which ids are valid, and how many channels
there are, is :class:`spade_tf.label_space.LabelSpace`'s to say.
"""

from __future__ import annotations

import keras
from keras import ops

from spade_tf.backend import check_ids
from spade_tf.label_space import LabelSpace


def _marks_both_pixels(differs, axis: int):
    """A differing pair of neighbours along ``axis`` (1 or 2) marks both of its pixels."""
    before = [[0, 0], [0, 0], [0, 0]]
    after = [[0, 0], [0, 0], [0, 0]]
    before[axis], after[axis] = [1, 0], [0, 1]
    return ops.maximum(ops.pad(differs, before), ops.pad(differs, after))


def instance_edges(instance_ids):
    """1.0 where a pixel's instance id differs from any 4-neighbour, else 0.0.

    ``instance_ids``: [B, H, W] integers. Returns float32 [B, H, W, 1].
    """
    ids = ops.convert_to_tensor(instance_ids)
    # Compared as 0/1 floats: every backend pads and combines those (not all pad booleans).
    horizontal = ops.cast(ops.not_equal(ids[:, :, 1:], ids[:, :, :-1]), "float32")
    vertical = ops.cast(ops.not_equal(ids[:, 1:, :], ids[:, :-1, :]), "float32")
    edge = ops.maximum(_marks_both_pixels(horizontal, 2), _marks_both_pixels(vertical, 1))
    return ops.expand_dims(edge, -1)


def check_label_ids(label_ids, num_classes: int, dontcare_label: int | None = None):
    """Return ``label_ids`` as int32 after asserting every id is valid.

    Valid ids are 0..num_classes-1, plus ``dontcare_label`` when given.
    """
    return check_label_space(label_ids, LabelSpace(num_classes, dontcare_label))


def check_label_space(label_ids, space: LabelSpace):
    """Return ``label_ids`` as int32 after asserting every id is in ``space``: in the
    graph on TensorFlow, so a served model and the input pipeline stop on a bad map too
    (how each backend reports: :func:`spade_tf.backend.check_ids`)."""
    ids = ops.cast(label_ids, "int32")
    valid = ops.logical_and(ops.greater_equal(ids, 0), ops.less(ids, space.num_classes))
    if space.dontcare_id is not None:
        valid = ops.logical_or(valid, ops.equal(ids, space.dontcare_id))
    return check_ids(ids, valid, space.allowed_text)


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
        ids = ops.where(ops.equal(ids, space.dontcare_id), space.dontcare_channel, ids)
        depth += 1
    semantic = ops.one_hot(ids, depth, dtype="float32")
    if instance_ids is not None:
        semantic = ops.concatenate([semantic, instance_edges(instance_ids)], axis=-1)
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
