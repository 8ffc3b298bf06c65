"""The Keras contract every layer and model of spade-tf must honour.

``check_layer_contract`` and ``check_model_contract`` assert: get_config ->
from_config round trip, ``.keras`` save -> load -> identical inference outputs,
the expected trainable-weight count, the expected output shape, and one
gradient step that reaches every trainable weight and changes the output.
"""

from __future__ import annotations

import copy

import keras
import numpy as np
import tensorflow as tf


def _flatten(outputs) -> list[np.ndarray]:
    return [np.asarray(x) for x in tf.nest.flatten(outputs)]


def _assert_same_outputs(expected, actual, atol: float = 0.0) -> None:
    expected, actual = _flatten(expected), _flatten(actual)
    assert len(expected) == len(actual)
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)


def _gradient_step(model: keras.Model, inputs, training_kwargs: dict) -> None:
    """One SGD step on mean(output^2): every trainable weight gets a finite gradient."""
    weights = model.trainable_weights
    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True, **training_kwargs)
        loss = tf.add_n([tf.reduce_mean(tf.square(x)) for x in tf.nest.flatten(outputs)])
    grads = tape.gradient(loss, weights)
    missing = [w.path for w, g in zip(weights, grads, strict=True) if g is None]
    assert not missing, f"no gradient reaches {missing}"
    for weight, grad in zip(weights, grads, strict=True):
        assert np.all(np.isfinite(grad)), f"non-finite gradient for {weight.path}"
    before = _flatten(model(inputs, training=False))
    keras.optimizers.SGD(learning_rate=0.1).apply_gradients(zip(grads, weights, strict=True))
    after = _flatten(model(inputs, training=False))
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True)), (
        "a gradient step did not change the output"
    )


def check_model_contract(model: keras.Model, inputs, tmp_path, *,
                         expected_trainable_weights: int | None = None,
                         expected_output_shapes=None, atol: float = 0.0) -> None:
    """Run the whole contract on a (functional subclass) model.

    ``expected_output_shapes`` lists the shapes of the flattened outputs.
    """
    outputs = model(inputs, training=False)
    if expected_output_shapes is not None:
        shapes = [tuple(x.shape) for x in tf.nest.flatten(outputs)]
        assert shapes == [tuple(s) for s in expected_output_shapes], shapes
    if expected_trainable_weights is not None:
        assert len(model.trainable_weights) == expected_trainable_weights, [
            w.path for w in model.trainable_weights
        ]

    config = model.get_config()
    clone = model.__class__.from_config(copy.deepcopy(config))
    assert clone.get_config() == config
    assert len(clone.weights) == len(model.weights)

    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    assert restored.get_config() == config
    _assert_same_outputs(outputs, restored(inputs, training=False), atol=atol)

    _gradient_step(model, inputs, {})


def check_layer_contract(make_layer, args: tuple, tmp_path, *, call_kwargs=None,
                         expected_trainable_weights: int | None = None,
                         expected_output_shape=None) -> keras.layers.Layer:
    """Run the contract on a layer called as ``layer(*args)``; returns the layer."""
    call_kwargs = call_kwargs or {}
    layer = make_layer()
    output = layer(*args, training=False, **call_kwargs) if _takes_training(layer) else layer(
        *args, **call_kwargs)
    if expected_output_shape is not None:
        assert tuple(output.shape) == tuple(expected_output_shape)
    if expected_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_trainable_weights, [
            w.path for w in layer.trainable_weights
        ]

    config = layer.get_config()
    clone = layer.__class__.from_config(copy.deepcopy(config))  # from_config may mutate
    assert clone.get_config() == config

    # Save inside a functional model, as users do, then compare inference outputs.
    symbolic = [keras.Input(batch_shape=tuple(a.shape), dtype=a.dtype.name) for a in args]
    wrapped = keras.Model(symbolic, layer(*symbolic, **call_kwargs))
    path = tmp_path / f"{layer.name}.keras"
    wrapped.save(path)
    restored = keras.saving.load_model(path)
    _assert_same_outputs(wrapped(list(args), training=False),
                         restored(list(args), training=False))
    if layer.trainable_weights:
        _gradient_step(wrapped, list(args), {})
    return layer


def _takes_training(layer: keras.layers.Layer) -> bool:
    return getattr(layer, "_call_has_training_arg", False)
