"""TorchAdam updates one variable after another inside a graph (less memory at once)."""

import keras
import numpy as np
import tensorflow as tf

from spade_tf.training.optimizers import TorchAdam


def _ancestors(op: tf.Operation) -> set[tf.Operation]:
    """Every op that runs before ``op`` (data and control edges)."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [tensor.op for tensor in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_each_update_waits_for_the_previous_one_and_values_are_unchanged():
    count = 4
    gradients = [tf.fill((64, 64), 0.1 * (i + 1)) for i in range(count)]

    def variables():
        return [keras.Variable(np.full((64, 64), i + 1.0, np.float32)) for i in range(count)]

    eager_variables = variables()
    TorchAdam(learning_rate=0.01, beta_1=0.0, beta_2=0.9).apply(gradients, eager_variables)

    traced_variables = variables()
    optimizer = TorchAdam(learning_rate=0.01, beta_1=0.0, beta_2=0.9)
    optimizer.build(traced_variables)
    step = tf.function(lambda: optimizer.apply(gradients, traced_variables))
    graph = step.get_concrete_function().graph
    step()
    for traced, eager in zip(traced_variables, eager_variables, strict=True):
        np.testing.assert_array_equal(traced.numpy(), eager.numpy())

    # The parameters' new values: variable + (-step_size * m) / denom.
    new_values = [op for op in graph.get_operations() if op.type == "AddV2"
                  and op.inputs[1].op.type == "RealDiv"
                  and any(consumer.type == "AssignVariableOp"
                          for consumer in op.outputs[0].consumers())]
    assert len(new_values) == count
    ordered = sorted(new_values, key=lambda op: len(_ancestors(op)))
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        assert earlier in _ancestors(later), (earlier.name, later.name)
