"""The one place the layers and networks ask which Keras backend runs them.

The layers and networks are written with ``keras.ops``, so the same code and the same
``.keras`` files run on TensorFlow, JAX and PyTorch. A few things exist only on
TensorFlow, and live here so that no layer imports TensorFlow itself (under JAX or
PyTorch, TensorFlow is never imported by this module):

- ``tf.custom_gradient`` with TF's own gradient kernels: the leaky ReLU, batch norm and
  CLADE's class lookup differentiated with less memory and fusable graphs (measured on
  TF). Other backends differentiate the same forward computation themselves: the same
  function, without that saving;
- ``all_reduce_sum``: batch norm's cross-replica sums under a ``tf.distribute`` strategy.
  Under JAX's ``keras.distribution.DataParallel`` the batch is one global array
  sharded over devices, so its sums are global already; PyTorch has no Keras
  distribution, so its statistics are those of the local batch;
- ``computed_after``: TF's executor runs an op as soon as its inputs exist; XLA (JAX)
  schedules for memory itself and PyTorch runs in program order;
- ``check_ids``: a bad label id must stop the computation with its value named. TF:
  ``tf.debugging.Assert`` in the graph (``InvalidArgumentError``, also in exports and
  ``tf.data``). PyTorch and eager JAX: a ``ValueError``. Inside ``jax.jit`` nothing can
  raise while tracing: a ``jax.debug.callback`` checks the values when the compiled
  function runs, and the call fails with a ``JaxRuntimeError`` whose message holds
  that ``ValueError``'s text.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import ops

BACKEND = keras.backend.backend()
IS_TENSORFLOW = BACKEND == "tensorflow"

if IS_TENSORFLOW:
    import tensorflow as tf

BAD_ID_ADVICE = "Check the class count of the model and of the label maps."


class NeedsTensorFlowError(RuntimeError):
    """A TensorFlow-only part of spade_tf was imported under another Keras backend."""


def require_tensorflow(what: str) -> None:
    """Stop with a clear message when ``what`` (training, export) runs on another backend:
    it is built on ``tf.distribute``, ``tf.GradientTape`` and SavedModels. The ``.keras``
    files are the same on every backend, so the TensorFlow backend reads theirs."""
    if not IS_TENSORFLOW:
        raise NeedsTensorFlowError(
            f"{what} runs on Keras's TensorFlow backend, and this process runs {BACKEND!r}: "
            "set KERAS_BACKEND=tensorflow before Keras is imported (the layers and "
            "networks, spade_tf.layers and spade_tf.models, run on every backend).")


def bad_id_message(allowed_text: str, bad_id, occurrences) -> str:
    return (f"label ids must be in {allowed_text}; found id {bad_id} (occurrences: "
            f"{occurrences}). {BAD_ID_ADVICE}")


def _raise_on_bad_ids(ids, valid, allowed_text: str) -> None:
    ids, valid = np.asarray(ids), np.asarray(valid)
    if not valid.all():
        bad = ids[~valid]
        raise ValueError(bad_id_message(allowed_text, int(bad[0]), bad.size))


def _in_symbolic_trace() -> bool:
    """True while Keras infers shapes (values are placeholders, not the user's ids)."""
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    return in_symbolic_scope()


def check_ids(ids, valid, allowed_text: str):
    """``ids``, after making sure every ``valid`` is true (see the module doc per backend)."""
    if IS_TENSORFLOW:
        bad_ids = tf.boolean_mask(ids, tf.logical_not(valid))
        check = tf.debugging.Assert(
            tf.reduce_all(valid),
            [f"label ids must be in {allowed_text}; found id", bad_ids[:1],
             "(occurrences:", tf.size(bad_ids), f"). {BAD_ID_ADVICE}"],
            name="check_label_ids",
        )
        with tf.control_dependencies([check]):
            return tf.identity(ids)
    if _in_symbolic_trace():
        return ids
    if BACKEND == "jax":
        import jax

        if isinstance(ids, jax.core.Tracer):
            # Raised when the compiled function runs (a JaxRuntimeError carrying the text).
            jax.debug.callback(_raise_on_bad_ids, ids, valid, allowed_text)
            return ids
    elif BACKEND == "torch" and ids.device.type == "meta":
        return ids
    _raise_on_bad_ids(ops.convert_to_numpy(ids), ops.convert_to_numpy(valid), allowed_text)
    return ids


def all_reduce_sum(value, synchronized: bool):
    """``value`` summed over the replicas of a ``tf.distribute`` step when synchronized."""
    if not (IS_TENSORFLOW and synchronized):
        return value
    context = tf.distribute.get_replica_context()
    # None: cross-replica context (e.g. a plain call under strategy.scope()); the
    # default strategy's context has one replica. Both use the local batch, as Keras does.
    if context is None or context.num_replicas_in_sync <= 1:
        return value
    # ReplicaContext.all_reduce is differentiable (its gradient is the all-reduced
    # gradient), which is what a sum of per-replica losses needs.
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def custom_gradient(function: Callable) -> Callable:
    """``tf.custom_gradient`` on TF; elsewhere the function's first result, differentiated
    by the backend (``function`` must compute its gradient's function, not another)."""
    if IS_TENSORFLOW:
        return tf.custom_gradient(function)

    def differentiated_by_the_backend(*args):
        return function(*args)[0]

    return differentiated_by_the_backend


def computed_after(tensor, dependency):
    """``tensor``, made to wait in a TF graph until ``dependency`` has been computed.

    TensorFlow's executor runs an op as soon as its inputs exist. Work that reads only a
    network's input (SPADE's label-map branch: cast, resize, shared conv) would run for
    every layer at the start of a call and its results would sit in memory until each
    layer is reached: 0.3 GiB at 512x512 for the ADE20K generator. Eager execution,
    PyTorch and XLA's scheduler need nothing.
    """
    if not IS_TENSORFLOW or tf.executing_eagerly():
        return tensor
    with tf.control_dependencies([dependency]):
        return tf.identity(tensor)


def leaky_relu_saving_output(x, negative_slope: float):
    """Leaky ReLU whose gradient is computed from its output (TF); elsewhere plain.

    With a slope >= 0 the output has the input's sign, so the backward pass needs only
    the output, which the next layer keeps anyway: the input is freed once the activation
    has run (one activation-sized tensor less per call in a training step). Differentiated
    from its input instead, it also trips TensorFlow's graph optimizer after a conv or an
    add: the optimizer fuses them into one op, then fails on the gradient that still
    reads the fused-away tensor and drops all of its fusions for the whole step.
    """
    if not IS_TENSORFLOW:
        return ops.leaky_relu(x, negative_slope=negative_slope)

    @tf.custom_gradient
    def activation(inputs):
        outputs = tf.nn.leaky_relu(inputs, alpha=negative_slope)

        def gradient(upstream):
            return tf.raw_ops.LeakyReluGrad(gradients=upstream, features=outputs,
                                            alpha=negative_slope)

        return outputs, gradient

    return activation(x)


def class_lookup(table, ids):
    """``table[ids]`` ([classes, C] rows for [B, H, W] ids), with a dense gradient.

    ``tf.gather``'s gradient is an ``IndexedSlices`` of one row per pixel: as large as the
    activation, and all-gathered whole across replicas. Summed per class here, it is a
    ``[classes, C]`` tensor like any other weight's gradient (summed in float32 under a
    half-precision policy). JAX and PyTorch give a dense gradient themselves.
    """
    if not IS_TENSORFLOW:
        return ops.take(table, ids, axis=0)

    @tf.custom_gradient
    def lookup(values):
        def gradient(upstream):
            rows = tf.reshape(tf.cast(upstream, tf.float32), [-1, tf.shape(values)[-1]])
            summed = tf.math.unsorted_segment_sum(rows, tf.reshape(ids, [-1]),
                                                  tf.shape(values)[0])
            return tf.cast(summed, values.dtype)

        return tf.gather(values, ids), gradient

    return lookup(table)
