"""Private Keras and TensorFlow APIs: the one module of spade_tf that touches them.

Nothing else in the package calls an underscore name of Keras or TensorFlow, overrides an
underscore hook, imports ``keras.src`` or ``tensorflow.python``, or uses
``tf.__internal__``: it goes through an entry here. Every entry was checked against
keras 3.15.1 and tensorflow 2.21.0 (``setup.py`` pins ``keras>=3.15,<3.16``), names the
public API that would replace it, and has tests in ``tests/spade_tf/test_compat.py`` that
use the private API itself and assert what this package relies on.

Checklist for lifting the ``keras<3.16`` pin (or a TensorFlow upgrade):

1. install the new release and run ``tests/spade_tf/test_compat.py``: a failing test
   names the entry the release broke;
2. rewrite that entry only (its docstring says what it must keep doing, and the public
   API to move to where there is one); callers do not change;
3. keras-team/keras#20585 (:class:`SkipSymbolicBuild`, and the per-worker reshape of the
   logs in ``spade_tf.training.gaugan``): if the release fixes it, drop the workaround;
4. run ``tests/spade_tf/training``, ``tests/spade_tf/test_precision.py``,
   ``tests/spade_tf/test_inference_loader.py``, ``tests/spade_cli/test_train.py`` and
   ``tests/spade_cli/test_recovery.py``: checkpoints written before must still resume;
5. update :data:`CHECKED_AGAINST` and the pins in ``setup.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf

# The releases every entry below was checked against.
CHECKED_AGAINST = {"keras": "3.15.1", "tensorflow": "2.21.0"}


# -- layers ---------------------------------------------------------------------------


def flatten_layers(network: keras.Layer) -> Iterator[keras.Layer]:
    """``network`` itself, then every layer nested in it, depth first, each once: layers
    of sub-models and layers held as attributes of plain layers (the convolution inside a
    ``SpectralNormalization``) included.

    Private: ``keras.Layer._flatten_layers(include_self=True, recursive=True)`` (keras
    3.15.1). Public replacement: none that reaches layers held by plain layers;
    ``keras.Model.layers`` lists a model's direct children only, so a replacement would
    walk it recursively and each of this package's layers would have to list its own.
    """
    return network._flatten_layers(include_self=True, recursive=True)


# -- fit ------------------------------------------------------------------------------


class SkipSymbolicBuild:
    """Mixin for a ``keras.Model`` built when it is constructed: ``fit`` (``evaluate``,
    ``train_on_batch`` ...) does not build it symbolically from a first batch.

    Workaround for keras-team/keras#20585: under ``MultiWorkerMirroredStrategy`` that
    build averages a dict of per-replica tensors with ``strategy.reduce``, which fails
    before the first step. Private: overrides the Trainer hook
    ``_maybe_symbolic_build(iterator=None, data_batch=None)`` that the TensorFlow
    trainer's ``fit`` calls (keras 3.15.1). Public replacement: none; drop this mixin
    once the bug is fixed.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        return


class OffsetProgbarLogger(keras.callbacks.ProgbarLogger):
    """``keras.callbacks.ProgbarLogger`` whose bar shows step ``batch + offset``: a ``fit``
    that finishes an interrupted epoch continues the bar from the steps done before.

    Private: overrides ``ProgbarLogger._update_progbar(batch, logs)``, which
    ``on_train_batch_end`` calls, and relies on its undocumented attributes ``epochs``
    and ``target`` (set by ``set_params`` from fit's ``epochs`` and ``steps``), ``seen``
    (steps shown in this epoch) and ``verbose`` (keras 3.15.1). Public replacement: a
    plain ``keras.callbacks.Callback`` drawing a ``keras.utils.Progbar`` of its own.
    """

    def __init__(self):
        super().__init__()
        self.offset = 0  # steps of the current epoch done before this fit

    def _update_progbar(self, batch, logs=None):
        super()._update_progbar(batch + self.offset, logs)


# -- distribution ---------------------------------------------------------------------


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` spans several workers (a ``MultiWorkerMirroredStrategy`` of one
    worker does not).

    Private: ``strategy.extended._in_multi_worker_mode()`` (tensorflow 2.21.0; Keras
    itself uses it). Public replacement: count the tasks of
    ``strategy.cluster_resolver.cluster_spec()`` (chief and workers) for
    ``MultiWorkerMirroredStrategy``.
    """
    return strategy.extended._in_multi_worker_mode()


# -- checkpoints ----------------------------------------------------------------------

# The checkpoint child under which a Keras optimizer saves ``optimizer.variables`` (its
# ``_variables`` list, tracked by attribute name): ``<optimizer>/_variables/<index>``.
OPTIMIZER_VARIABLES_CHILD = "_variables"


class CheckpointNode(tf.__internal__.tracking.Trackable):
    """A ``tf.train.Checkpoint`` node whose children are ``children`` under their given
    names (any strings, e.g. ``"3"``): checkpoint keys ``<node>/<name>/...``.

    Private: ``tf.__internal__.tracking.Trackable`` with ``_maybe_initialize_trackable``
    and ``_track_trackable(child, name=...)`` (tensorflow 2.21.0). Public replacement: a
    ``tf.Module`` given the children with ``setattr`` (it tracks attributes by name);
    check that it adds no children of its own to the keys.
    """

    def __init__(self, children: dict):
        self._maybe_initialize_trackable()
        for name, child in children.items():
            self._track_trackable(child, name=name)


class ReplacesCheckpointChildren:
    """Mixin for a trackable (a Keras optimizer, layer, model): ``checkpoint_children``
    gets the children it would save or restore, by name, and returns those to use.

    Private: overrides ``Trackable._trackable_children(save_type="checkpoint",
    **kwargs)``, through which ``tf.train.Checkpoint`` finds an object's children
    (tensorflow 2.21.0, with Keras 3.15.1's ``KerasAutoTrackable``, which lists tracked
    attributes by name). Public replacement: none; a checkpoint built from explicit
    ``tf.train.Checkpoint(**objects)`` mappings instead of the Keras objects would avoid it.
    """

    def checkpoint_children(self, children: dict) -> dict:
        return children

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        return self.checkpoint_children(super()._trackable_children(save_type, **kwargs))


def set_untracked(owner, name: str, value) -> None:
    """``owner.name = value`` without Keras's attribute tracking: a trackable ``value``
    does not become a checkpoint child of ``owner`` (nor a weight or sub-layer).

    Relies on Keras 3.15.1 tracking attributes in ``__setattr__`` (``KerasAutoTrackable``
    and the layers' and optimizers' ``Tracker``), which ``object.__setattr__`` skips.
    Public replacement: keep the value outside the tracked object.
    """
    object.__setattr__(owner, name, value)


# -- optimizers -----------------------------------------------------------------------


def variable_index(optimizer: keras.optimizers.Optimizer, variable) -> int:
    """The position of ``variable`` in the list the optimizer was built with: the index of
    its slots (momentum, velocity).

    Private: ``Optimizer._get_variable_index(variable)`` (keras 3.15.1; Keras's own
    optimizers use it in ``update_step``). Public replacement: a dict from ``id(variable)``
    to position, filled by the optimizer's ``build``.
    """
    return optimizer._get_variable_index(variable)


def optimizer_velocities(optimizer: keras.optimizers.Optimizer) -> list:
    """``keras.optimizers.Adam``'s second-moment slots (and ``TorchAdam``'s, held under the
    same attribute so the checkpoint keys match), one per trained variable, in the order
    of the variables the optimizer was built with.

    Relies on (keras 3.15.1): the attribute ``_velocities`` (with ``_momentums``, a
    checkpoint child that restoring matches by name); and Adam's order of
    ``optimizer.variables``, which a checkpoint saves under
    ``<optimizer>/_variables/<j>`` (:data:`OPTIMIZER_VARIABLES_CHILD`): iterations,
    learning rate, then momentum ``i`` at ``2 + 2i`` and velocity ``i`` at ``3 + 2i``
    (``add_optimizer_variables(var_list, ["momentum", "velocity"])``). ``TorchAdam`` with
    ``beta_1 = 0`` saves its velocities at those keys. Public replacement: none
    (``optimizer.variables`` is public, its order is not documented).
    """
    return optimizer._velocities


# -- TensorFlow Lite flatbuffers ----------------------------------------------------


def _tflite_schema():
    from tensorflow.lite.python import schema_py_generated
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils, schema_py_generated


def tflite_add_metadata(model: bytes, name: str, value: bytes) -> bytes:
    """``model`` (a ``.tflite`` flatbuffer) with ``value`` as metadata entry ``name`` (a
    buffer referenced from the model's ``metadata`` table, where TFLite keeps, e.g., its
    ``min_runtime_version``; an entry of that name already there is replaced).

    Private: ``tensorflow.lite.tools.flatbuffer_utils`` and ``tensorflow.lite.python.
    schema_py_generated`` (the flatbuffer object API generated from TFLite's schema;
    tensorflow 2.21.0). Public replacement: the ``tflite-support`` metadata writers, which
    add a TFLite Support schema of their own (and a heavy dependency) for what is one
    named buffer here.
    """
    utils, schema = _tflite_schema()
    tree = utils.convert_bytearray_to_object(bytearray(model))
    tree.metadata = [entry for entry in (tree.metadata or [])
                     if entry.name.decode() != name]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(tree.buffers) - 1
    tree.metadata.append(entry)
    return bytes(utils.convert_object_to_bytearray(tree))


def tflite_metadata(model: bytes) -> dict[str, bytes]:
    """The metadata entries of a ``.tflite`` flatbuffer: {name: bytes}. Private:
    as :func:`tflite_add_metadata` (tensorflow 2.21.0); public replacement: the
    ``tflite-support`` metadata readers, for their own schema only."""
    utils, _ = _tflite_schema()
    tree = utils.convert_bytearray_to_object(bytearray(model))
    found = {}
    for entry in tree.metadata or []:
        data = tree.buffers[entry.buffer].data
        found[entry.name.decode()] = bytes(np.asarray(data, np.uint8)) if data is not None \
            else b""
    return found


def tflite_operators(model: bytes) -> list[str]:
    """The operators a ``.tflite`` flatbuffer uses, sorted: builtin names (``CONV_2D``), or
    ``custom:<code>`` for custom and Select TF (``Flex...``) operators. Private: as
    :func:`tflite_add_metadata` (tensorflow 2.21.0); public replacement:
    ``tf.lite.experimental.Analyzer.analyze``, which prints a report instead of returning
    the names."""
    utils, schema = _tflite_schema()
    tree = utils.convert_bytearray_to_object(bytearray(model))
    builtin = {value: name for name, value in vars(schema.BuiltinOperator).items()
               if not name.startswith("_")}
    names = set()
    for code in tree.operatorCodes:
        if code.customCode:
            names.add(f"custom:{code.customCode.decode()}")
        else:
            names.add(builtin[max(code.builtinCode, code.deprecatedBuiltinCode)])
    return sorted(names)
