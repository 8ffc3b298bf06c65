"""spade_tf.compat: each entry's private Keras/TensorFlow API still does what the package
relies on. These tests use the private APIs themselves, so a release that changes one
fails here, naming the entry to rewrite (see the checklist at the top of compat.py)."""

import inspect
import json
import os
import socket
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from support import ROOT
from support.processes import Processes

from spade_tf import compat
from spade_tf.layers.spectral_norm import SpectralNormalization
from spade_tf.training.optimizers import TorchAdam


def test_the_installed_releases_are_the_checked_ones():
    """Lifting a pin means going through compat.py's checklist, then updating
    CHECKED_AGAINST (major.minor: patch releases within the pins are covered)."""
    for module in (keras, tf):
        checked = compat.CHECKED_AGAINST[module.__name__].rsplit(".", 1)[0]
        assert module.__version__.startswith(checked + "."), (module.__name__,
                                                               module.__version__)


# -- flatten_layers -------------------------------------------------------------------


class _Block(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.norm = SpectralNormalization(keras.layers.Conv2D(2, 3, name="conv"), name="sn")
        self.dense = keras.layers.Dense(2, name="dense")


class _Net(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.block = _Block(name="block")
        self.head = keras.layers.Dense(1, name="head")
        self.inner = keras.Sequential([keras.layers.Dense(3, name="inner_dense")],
                                      name="inner")


def test_flatten_layers_yields_the_network_then_every_nested_layer_once_parents_first():
    net = _Net(name="net")
    assert list(net._flatten_layers()) == list(compat.flatten_layers(net))  # the defaults
    names = [layer.name for layer in compat.flatten_layers(net)]
    assert names[0] == "net"  # the network itself first (precision reads its own policy)
    assert len(names) == len(set(names))
    # Layers held by plain layers are reached: the convolution a SpectralNormalization
    # wraps (inference_loader folds each wrapper) and those of a sub-model.
    assert set(names) == {"net", "block", "sn", "conv", "dense", "head", "inner",
                          "inner_dense"}
    for parent, child in (("net", "block"), ("block", "sn"), ("sn", "conv"),
                          ("block", "dense"), ("inner", "inner_dense")):
        assert names.index(parent) < names.index(child), names
    # What the callers read from the yielded layers.
    layers = {layer.name: layer for layer in compat.flatten_layers(net)}
    assert layers["conv"] is layers["sn"].layer
    assert layers["conv"].dtype_policy.compute_dtype == "float32"


# -- SkipSymbolicBuild ----------------------------------------------------------------


def test_fit_calls_the_symbolic_build_hook_that_skip_symbolic_build_overrides():
    assert "_maybe_symbolic_build" in vars(compat.SkipSymbolicBuild)
    parameters = inspect.signature(keras.Model._maybe_symbolic_build).parameters
    assert {"iterator", "data_batch"} <= set(parameters)
    calls = []

    class Recording(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            calls.append((iterator is not None, data_batch is not None))
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    model = Recording()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32"), batch_size=2,
              epochs=1, verbose=0)
    assert calls and calls[0] == (True, False), calls

    class Skipping(compat.SkipSymbolicBuild, Recording):
        pass

    calls.clear()
    skipping = Skipping()
    skipping.dense.build((None, 2))
    skipping.compile(optimizer="sgd", loss="mse")
    skipping.fit(np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32"), batch_size=2,
                 epochs=1, verbose=0)
    assert calls == []  # the mixin comes first: Keras's build is never reached


# -- OffsetProgbarLogger --------------------------------------------------------------


def test_progbar_logger_draws_through_update_progbar_and_keeps_its_attributes():
    drawn = []

    class Recording(keras.callbacks.ProgbarLogger):
        def _update_progbar(self, batch, logs=None):
            drawn.append(batch)
            super()._update_progbar(batch, logs)

    logger = Recording()
    logger.set_params({"verbose": 0, "epochs": 3, "steps": 5})
    assert (logger.epochs, logger.target, logger.verbose) == (3, 5, 0)
    logger.on_epoch_begin(0)
    logger.on_train_batch_end(1, {"loss": 1.0})
    assert drawn == [1] and logger.seen == 2

    offset = compat.OffsetProgbarLogger()
    offset.set_params({"verbose": 0, "epochs": 1, "steps": 5})
    offset.offset = 3
    offset.on_epoch_begin(0)
    offset.on_train_batch_end(0, {})
    assert offset.seen == 4  # step 1 of this fit is step 4 of the epoch


# -- in_multi_worker_mode -------------------------------------------------------------


def test_in_multi_worker_mode_is_false_on_one_worker():
    assert compat.in_multi_worker_mode(tf.distribute.get_strategy()) is False
    assert tf.distribute.get_strategy().extended._in_multi_worker_mode() is False
    assert compat.in_multi_worker_mode(tf.distribute.MirroredStrategy(["/cpu:0"])) is False


_WORKER = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
from spade_tf import compat
strategy = tf.distribute.MultiWorkerMirroredStrategy()
print(strategy.extended._in_multi_worker_mode(), compat.in_multi_worker_mode(strategy))
sys.stdout.flush()
os._exit(0)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_in_multi_worker_mode_is_true_across_two_workers():
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    base = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    processes = Processes()
    try:
        started = [processes.start([sys.executable, "-c", _WORKER], env={
            **base, "TF_CONFIG": json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": index}})})
            for index in range(2)]
        results = [processes.finish(process, 300) for process in started]
    finally:
        processes.close()
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.split() == ["True", "True"], result.stdout


# -- checkpoints ----------------------------------------------------------------------


def _keys(path: str) -> dict:
    return {key: tf.train.load_variable(path, key) for key, _ in tf.train.list_variables(path)
            if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def test_checkpoint_node_saves_and_restores_its_children_under_their_names(tmp_path):
    assert issubclass(compat.CheckpointNode, tf.__internal__.tracking.Trackable)
    node = compat.CheckpointNode({"3": tf.Variable([1.0, 2.0]), "x": tf.Variable(5)})
    path = tf.train.Checkpoint(node=node).save(str(tmp_path / "ckpt"))
    keys = _keys(path)
    assert set(keys) - {"save_counter/.ATTRIBUTES/VARIABLE_VALUE"} == {
        "node/3/.ATTRIBUTES/VARIABLE_VALUE", "node/x/.ATTRIBUTES/VARIABLE_VALUE"}
    fresh = tf.Variable([0.0, 0.0]), tf.Variable(0)
    restored = compat.CheckpointNode({"3": fresh[0], "x": fresh[1]})
    tf.train.Checkpoint(node=restored).restore(path).assert_existing_objects_matched()
    assert fresh[0].numpy().tolist() == [1.0, 2.0] and int(fresh[1].numpy()) == 5


def _built(optimizer, variables):
    optimizer.build(variables)
    return optimizer


def test_replaced_checkpoint_children_are_what_a_checkpoint_saves(tmp_path):
    seen = {}

    class Replacing(compat.ReplacesCheckpointChildren, keras.optimizers.SGD):
        def checkpoint_children(self, children):
            seen.update(children)
            return {**children, "extra": self.extra}

    optimizer = Replacing()
    compat.set_untracked(optimizer, "extra", tf.Variable(7.0))
    _built(optimizer, [tf.Variable([1.0])])
    keys = _keys(tf.train.Checkpoint(opt=optimizer).save(str(tmp_path / "ckpt")))
    # Keras tracks an optimizer's variables under "_variables", which TorchAdam replaces.
    assert compat.OPTIMIZER_VARIABLES_CHILD in seen
    assert keys["opt/extra/.ATTRIBUTES/VARIABLE_VALUE"] == 7.0


def test_set_untracked_keeps_a_trackable_out_of_a_keras_optimizers_checkpoint():
    optimizer = _built(keras.optimizers.SGD(), [tf.Variable([1.0])])
    optimizer.tracked = compat.CheckpointNode({"v": tf.Variable(1.0)})
    compat.set_untracked(optimizer, "untracked", compat.CheckpointNode({"v": tf.Variable(2.0)}))
    children = optimizer._trackable_children("checkpoint")
    # Keras tracks attributes as they are set: the plain assignment adds a child.
    assert "tracked" in children and "untracked" not in children
    assert optimizer.untracked is not None


# -- optimizers -----------------------------------------------------------------------


def test_variable_index_is_the_position_in_the_built_list():
    variables = [tf.Variable(np.zeros(n, "float32")) for n in (2, 3, 4)]
    optimizer = _built(keras.optimizers.Adam(), variables)
    assert [compat.variable_index(optimizer, v) for v in variables] == [0, 1, 2]
    assert [optimizer._get_variable_index(v) for v in variables] == [0, 1, 2]


def test_adams_variables_interleave_momentums_and_velocities_after_two_leading(tmp_path):
    variables = [tf.Variable(np.ones(n, "float32")) for n in (2, 3)]
    adam = _built(keras.optimizers.Adam(beta_1=0.5), variables)
    adam.apply([tf.constant([1.0, 2.0]), tf.constant([3.0, 4.0, 5.0])], variables)
    velocities = compat.optimizer_velocities(adam)
    assert velocities is adam._velocities and len(velocities) == 2
    assert adam.variables[0] is adam.iterations
    assert adam.variables[1] is adam._learning_rate
    for index in range(2):
        assert adam.variables[2 + 2 * index] is adam._momentums[index]
        assert adam.variables[3 + 2 * index] is velocities[index]
    # Checkpoints save them under "_variables/<position>": what TorchAdam's positions match.
    keys = _keys(tf.train.Checkpoint(opt=adam).save(str(tmp_path / "adam")))
    for index in range(2):
        np.testing.assert_array_equal(
            keys[f"opt/{compat.OPTIMIZER_VARIABLES_CHILD}/{3 + 2 * index}"
                 "/.ATTRIBUTES/VARIABLE_VALUE"], velocities[index].numpy())


def test_an_adam_checkpoints_velocities_restore_into_torch_adam_without_momentums(tmp_path):
    """The end-to-end consequence of the entries above (TorchAdam's _CheckpointPositions)."""
    variables = [tf.Variable(np.ones(n, "float32")) for n in (2, 3)]
    adam = _built(keras.optimizers.Adam(beta_1=0.0), variables)
    adam.apply([tf.constant([1.0, 2.0]), tf.constant([3.0, 4.0, 5.0])], variables)
    path = tf.train.Checkpoint(opt=adam).save(str(tmp_path / "adam"))
    torch_adam = _built(TorchAdam(beta_1=0.0), [tf.Variable(v) for v in variables])
    assert compat.optimizer_velocities(torch_adam) == torch_adam.variables[2:]
    tf.train.Checkpoint(opt=torch_adam).restore(path)
    for ours, theirs in zip(compat.optimizer_velocities(torch_adam),
                            compat.optimizer_velocities(adam), strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert int(torch_adam.iterations.numpy()) == 1
    # And TorchAdam's own checkpoint uses the same keys as Adam's for them.
    keys = _keys(tf.train.Checkpoint(opt=torch_adam).save(str(tmp_path / "torch")))
    assert {key for key in keys if "/_variables/" in key} == {
        "opt/_variables/3/.ATTRIBUTES/VARIABLE_VALUE",
        "opt/_variables/5/.ATTRIBUTES/VARIABLE_VALUE"}


def test_tflite_flatbuffers_take_and_give_back_metadata_and_name_their_operators():
    function = tf.function(lambda x: {"y": tf.nn.relu(x) * 2.0},
                           input_signature=[tf.TensorSpec([1, 3], tf.float32)])
    model = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], tf.Module()).convert()
    before = compat.tflite_metadata(model)
    assert "min_runtime_version" in before  # the converter's own entry, kept
    tagged = compat.tflite_add_metadata(model, "mine", b'{"a": 1}')
    tagged = compat.tflite_add_metadata(tagged, "mine", b'{"a": 2}')  # replaced, not added
    after = compat.tflite_metadata(tagged)
    assert after["mine"] == b'{"a": 2}' and set(after) == {*before, "mine"}
    assert compat.tflite_operators(tagged) == ["MUL", "RELU"]


@pytest.mark.parametrize("entry", [
    "flatten_layers", "SkipSymbolicBuild", "OffsetProgbarLogger", "in_multi_worker_mode",
    "CheckpointNode", "ReplacesCheckpointChildren", "set_untracked", "variable_index",
    "optimizer_velocities", "tflite_add_metadata", "tflite_metadata", "tflite_operators"])
def test_every_entry_says_what_it_was_checked_against_and_its_replacement(entry):
    doc = inspect.getdoc(getattr(compat, entry))
    assert "3.15.1" in doc or "2.21.0" in doc, entry
    assert "replacement" in doc.lower() or "drop this" in doc.lower(), entry
