"""The reference's semantic input: one-hot label maps, don't-care and instance-edge channels."""

from __future__ import annotations

import numpy as np

from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch_beside_tensorflow()  # Triton kept out: see spade_tf.torch_import


def instance_edges(instance_ids: np.ndarray) -> np.ndarray:
    """Bool [B, H, W]: True where the id differs from any 4-neighbour."""
    t = np.asarray(instance_ids)
    edge = np.zeros(t.shape, dtype=bool)
    horizontal = t[:, :, 1:] != t[:, :, :-1]
    vertical = t[:, 1:, :] != t[:, :-1, :]
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    edge[:, 1:, :] |= vertical
    edge[:, :-1, :] |= vertical
    return edge


def semantic_one_hot(
    label_ids: np.ndarray,
    num_classes: int,
    dontcare_label: int | None = None,
    instance_ids: np.ndarray | None = None,
) -> torch.Tensor:
    """Float32 NCHW semantic input: one-hot classes [+ don't-care] [+ instance edges].

    ``dontcare_label`` (e.g. 255) maps to channel ``num_classes``; the edge channel,
    when ``instance_ids`` are given, comes last. Other ids outside [0, num_classes)
    raise ``ValueError``.
    """
    ids = np.asarray(label_ids)
    if ids.ndim != 3 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"label_ids must be an integer array [B, H, W], got {ids.dtype} {ids.shape}"
        )
    if dontcare_label is not None and 0 <= dontcare_label < num_classes:
        raise ValueError(
            f"dontcare_label {dontcare_label} collides with class ids "
            f"0..{num_classes - 1}; use an id >= num_classes such as 255"
        )
    ids = ids.astype(np.int64)
    is_dontcare = (
        ids == dontcare_label
        if dontcare_label is not None
        else np.zeros(ids.shape, bool)
    )
    bad = ((ids < 0) | (ids >= num_classes)) & ~is_dontcare
    if bad.any():
        raise ValueError(
            f"label ids {np.unique(ids[bad]).tolist()[:10]} are out of range: expected "
            f"0..{num_classes - 1}"
            + (
                f" or {dontcare_label} (don't-care)"
                if dontcare_label is not None
                else ""
            )
            + "; fix num_classes/dontcare_label or the label maps"
        )
    depth = num_classes + (dontcare_label is not None)
    ids = np.where(is_dontcare, num_classes, ids)
    onehot = np.eye(depth, dtype=np.float32)[ids].transpose(0, 3, 1, 2)
    if instance_ids is not None:
        inst = np.asarray(instance_ids)
        if inst.shape != ids.shape:
            raise ValueError(
                f"instance_ids shape {inst.shape} must equal label_ids shape "
                f"{ids.shape}"
            )
        edges = instance_edges(inst).astype(np.float32)[:, None]
        onehot = np.concatenate([onehot, edges], axis=1)
    return torch.from_numpy(np.ascontiguousarray(onehot))
