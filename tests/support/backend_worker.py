"""Runs the cross-backend checks in a process of its own Keras backend.

``KERAS_BACKEND=jax python backend_worker.py JOB_DIR CHECK...`` reads what the TensorFlow
side wrote in ``JOB_DIR`` (``.keras`` files, inputs and expected outputs as ``.npz``),
runs each named check and writes ``JOB_DIR/result_<backend>.json``: numbers for the test
to assert (differences, losses), not verdicts. One process runs every check: each start
of a backend costs seconds. Checks:

- ``imports``: which heavy frameworks importing the layers and networks loaded;
- ``models``: every ``<name>.keras`` in ``models.json`` loaded and run on its inputs
  (``<name>_inputs.npz``), differences to each expected ``<name>_<source>.npz``; the
  outputs written as ``<name>_<backend>.npz``;
- ``save``: those models saved again under this backend (``<backend>/<name>.keras``), for
  the way back (Keras's saving imports TensorFlow where it is installed, seconds: apart);
- ``semantic``: ``SemanticInput`` on the labels of ``semantic.npz``;
- ``ids``: the error a bad label id gives, eagerly and (JAX) inside ``jax.jit``;
- ``batch_norm``: one training call of ``ParameterFreeBatchNorm``: output, moving
  statistics and input gradient, on ``batch_norm.npz``'s input;
- ``fit``: the README's layer example trained with ``model.fit``;
- ``data_parallel`` (JAX with two host devices): one ``fit`` step under
  ``keras.distribution.DataParallel``; a batch norm's moving mean against the global and
  the per-device batch means;
- ``needs_tensorflow``: what importing training and export says (last: imports TF).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
from keras import ops

BACKEND = keras.backend.backend()
_LOADED = {}  # name -> the model check_models loaded, for check_save


def _max_difference(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _scaled_difference(a, b) -> float:
    """The largest difference relative to the expected output's scale (at least 1): a
    random network's outputs reach tens, where float32 itself rounds by more than 1e-5."""
    return _max_difference(a, b) / max(1.0, float(np.max(np.abs(np.asarray(b)))))


def flat_outputs(outputs) -> list[np.ndarray]:
    """A network's outputs as a list of arrays, in a fixed order (dicts by key)."""
    if isinstance(outputs, dict):
        return [ops.convert_to_numpy(outputs[key]) for key in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return [array for item in outputs for array in flat_outputs(item)]
    return [ops.convert_to_numpy(outputs)]


def save_outputs(path, arrays) -> None:
    """A network's outputs as ``out0``, ``out1`` ... in one ``.npz`` (what ``models`` reads)."""
    np.savez(path, **{f"out{index}": array for index, array in enumerate(arrays)})


def as_called(inputs: dict):
    """A dict of inputs, or the one input alone (a one-input model is called so)."""
    return inputs if len(inputs) > 1 else next(iter(inputs.values()))


def _tensors(npz) -> dict:
    return {key: ops.convert_to_tensor(npz[key]) for key in npz.files}


def check_imports(job: Path) -> dict:
    import spade_tf
    import spade_tf.layers
    import spade_tf.models  # noqa: F401

    spade_tf.SPADEGenerator  # noqa: B018 (a public name, loaded on first use)
    return {name: name in sys.modules for name in ("tensorflow", "torch", "jax")}


def check_models(job: Path) -> dict:
    import spade_tf.models  # noqa: F401 (registers the classes)

    results = {}
    for name, sources in json.loads((job / "models.json").read_text()).items():
        model = _LOADED[name] = keras.saving.load_model(job / f"{name}.keras")
        inputs = _tensors(np.load(job / f"{name}_inputs.npz"))
        actual = flat_outputs(model(as_called(inputs), training=False))
        save_outputs(job / f"{name}_{BACKEND}.npz", actual)
        results[name] = {}
        for source in sources:
            expected = np.load(job / f"{name}_{source}.npz")
            expected = [expected[f"out{index}"] for index in range(len(expected.files))]
            assert len(expected) == len(actual), (name, len(expected), len(actual))
            results[name][source] = max(map(_scaled_difference, actual, expected))
    return results


def check_save(job: Path) -> dict:
    (job / BACKEND).mkdir(exist_ok=True)
    for name, model in _LOADED.items():
        model.save(job / BACKEND / f"{name}.keras")
    return {"saved": sorted(_LOADED)}


def check_semantic(job: Path) -> dict:
    from spade_tf.layers import SemanticInput

    data = np.load(job / "semantic.npz")
    layer = SemanticInput(5, use_dontcare_label=True, use_instance_edges=True)
    semantic = layer(ops.convert_to_tensor(data["labels"]),
                     ops.convert_to_tensor(data["instances"]))
    return {"difference": _max_difference(ops.convert_to_numpy(semantic), data["semantic"])}


def _error_text(function) -> str | None:
    try:
        function()
    except Exception as error:  # noqa: BLE001 (the test reads its type and text)
        return f"{type(error).__name__}: {error}"
    return None


def check_ids(job: Path) -> dict:
    from spade_tf.layers import SemanticInput

    layer = SemanticInput(4)
    bad = ops.convert_to_tensor(np.array([[[1, 9], [2, 3]]], np.int32))
    results = {"eager": _error_text(lambda: layer(bad))}
    if BACKEND == "jax":
        import jax

        compiled = jax.jit(lambda ids: layer(ids))
        results["jit_good"] = _error_text(
            lambda: compiled(ops.convert_to_tensor(np.zeros((1, 2, 2), np.int32))))
        results["jit"] = _error_text(lambda: compiled(bad).block_until_ready())
    return results


def check_batch_norm(job: Path) -> dict:
    from spade_tf.layers import ParameterFreeBatchNorm

    data = np.load(job / "batch_norm.npz")
    layer = ParameterFreeBatchNorm()
    layer.build(data["x"].shape)
    weights = data["weights"]
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def loss(x):
            state = [variable.value for variable in layer.non_trainable_variables]
            outputs, state = layer.stateless_call([], state, x, training=True)
            return jnp.sum(outputs * weights), (outputs, state)

        (_, (outputs, state)), gradient = jax.value_and_grad(loss, has_aux=True)(
            jnp.asarray(data["x"]))
        mean, variance = state
    else:  # torch
        from spade_tf.torch_import import import_torch_beside_tensorflow

        torch = import_torch_beside_tensorflow()  # Triton kept out (the rule)

        x = torch.tensor(data["x"], requires_grad=True)
        outputs = layer(x, training=True)
        (outputs * torch.from_numpy(weights)).sum().backward()
        gradient, mean, variance = x.grad, layer.moving_mean, layer.moving_variance
    actual = {"outputs": outputs, "moving_mean": mean, "moving_variance": variance,
              "gradient": gradient}
    return {key: _max_difference(ops.convert_to_numpy(value), data[key])
            for key, value in actual.items()}


def check_fit(job: Path) -> dict:
    """The README's example (smaller), trained: losses and how far the weights moved."""
    from spade_tf.layers import SPADE, SemanticInput, SPADEResBlock

    keras.utils.set_random_seed(0)
    labels = keras.Input((32, 32), dtype="int32", name="labels")
    features = keras.Input((8, 8, 8), name="features")
    semantic = SemanticInput(num_classes=5)(labels)
    x = SPADE(norm_type="instance", hidden_filters=16)(features, semantic)
    x = SPADEResBlock(16, norm_type="instance", hidden_filters=16)(x, semantic)
    # Batch norm in training too (the layers' default is its synchronized kind).
    x = SPADEResBlock(12, norm_type="sync_batch", hidden_filters=16, name="batch_block")(
        x, semantic)
    model = keras.Model([labels, features], keras.layers.Conv2D(3, 3, padding="same")(x))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    rng = np.random.default_rng(0)
    data = ([rng.integers(0, 5, (8, 32, 32)).astype(np.int32),
             rng.normal(size=(8, 8, 8, 8)).astype(np.float32)],
            rng.normal(size=(8, 8, 8, 3)).astype(np.float32))
    before = [ops.convert_to_numpy(weight) for weight in model.weights]
    history = model.fit(*data, batch_size=4, epochs=4, verbose=0)
    after = [ops.convert_to_numpy(weight) for weight in model.weights]
    moved = {weight.path: _max_difference(old, new)
             for weight, old, new in zip(model.weights, before, after, strict=True)}
    moving = [path for path in moved if "moving_" in path]
    return {"loss": [float(value) for value in history.history["loss"]],
            "trainable_moved": min(moved[w.path] for w in model.trainable_weights),
            "moving_statistics": len(moving),
            "moving_moved": min(moved[path] for path in moving)}


def check_data_parallel(job: Path) -> dict:
    import jax

    from spade_tf.layers import SPADEResBlock

    devices = jax.devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    semantic, features = keras.Input((8, 8, 3)), keras.Input((8, 8, 4))
    block = SPADEResBlock(6, norm_type="sync_batch", hidden_filters=4, name="block")
    model = keras.Model([features, semantic], block(features, semantic))
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    # Each example shifted by its index: the two devices' halves have different means.
    x = rng.normal(2.0, 1.0, (4, 8, 8, 4)) + np.arange(4.0)[:, None, None, None]
    x = x.astype(np.float32)
    model.fit([x, rng.uniform(size=(4, 8, 8, 3)).astype(np.float32)],
              np.zeros((4, 8, 8, 6), np.float32), batch_size=4, epochs=1, verbose=0)
    # The first norm sees x itself; its moving mean starts at 0, momentum 0.1.
    moving_mean = ops.convert_to_numpy(block.norm_0.param_free_norm.moving_mean) / 0.1
    return {"devices": len(devices),
            "vs_global": _max_difference(moving_mean, x.mean(axis=(0, 1, 2))),
            "vs_first_device": _max_difference(moving_mean, x[:2].mean(axis=(0, 1, 2)))}


def check_needs_tensorflow(job: Path) -> dict:
    import importlib

    return {module: _error_text(lambda module=module: importlib.import_module(module))
            for module in ("spade_tf.training", "spade_tf.export")}


def main() -> None:
    job = Path(sys.argv[1])
    results = {"backend": BACKEND}
    for name in sys.argv[2:]:
        results[name] = globals()[f"check_{name}"](job)
    (job / f"result_{BACKEND}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
