"""The optimizers of training: Adam with torch.optim.Adam's arithmetic (the reference's), or
Keras's Adam (``train.optimizer``).

``TorchAdam`` is Adam with torch.optim.Adam's arithmetic, as a Keras 3 optimizer.

keras.optimizers.Adam differs from torch.optim.Adam in where epsilon goes: Keras adds
it to ``sqrt(v)`` before the bias correction (``lr * sqrt(1 - b2^t) / (1 - b1^t) * m /
(sqrt(v) + eps)``), PyTorch after (``m_hat / (sqrt(v_hat) + eps)``), and Keras computes
the bias corrections in float32 where PyTorch uses Python floats (float64). Both change
the trajectory when ``sqrt(v_hat)`` is small, e.g. in the first steps or for tiny
gradients.

The update follows ``torch/optim/adam.py`` (``_single_tensor_adam``, torch 2.13, the
default on CPU; the foreach path used on GPU does the same operations), for
``amsgrad=False``, ``maximize=False`` and ``weight_decay=0``:

    step += 1
    m.lerp_(g, 1 - b1)                       # m + w * (g - m), or g - (g - m) * (1 - w)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)  # v * b2 + ((1 - b2) * g) * g
    step_size = lr / (1 - b1 ** step)                       # Python floats (float64)
    denom = v.sqrt() / (1 - b2 ** step) ** 0.5 + eps
    p.addcdiv_(m, denom, value=-step_size)   # p + (-step_size * m) / denom
"""

from __future__ import annotations

import keras
import tensorflow as tf

from spade_tf import compat


@keras.saving.register_keras_serializable(package="spade_tf")
class TorchAdam(compat.ReplacesCheckpointChildren, keras.optimizers.Optimizer):
    """torch.optim.Adam (epsilon added to ``sqrt(v_hat)`` after bias correction).

    Slots are ``momentum``/``velocity`` variables held in ``_momentums``/``_velocities``
    like keras.optimizers.Adam (same meaning: moving averages of g and g^2), so Adam's
    checkpointed slots restore into it. With ``beta_1 = 0`` (GauGAN's setting) the first
    moment is the gradient itself, so no momentum is stored (one copy of the weights less)
    and the velocities keep the checkpoint keys they have beside momentums: Adam's and
    earlier checkpoints resume, and one without momentums cannot be restored into an
    optimizer that needs them (an unmatched-object error, not wrong values).
    ``weight_decay`` (base-class argument) is Keras's decoupled decay, not torch Adam's L2
    term; leave it unset for torch parity.

    Args:
        learning_rate: float, schedule or callable, as for any Keras optimizer.
        beta_1: decay of the first moment (PyTorch's ``betas[0]``).
        beta_2: decay of the second moment (PyTorch's ``betas[1]``).
        epsilon: added to ``sqrt(v_hat)`` (PyTorch's default 1e-8).
    """

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, name: str = "torch_adam", **kwargs) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        for label, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{label}={beta}: expected a value in [0, 1).")
        if epsilon < 0.0:
            raise ValueError(f"epsilon={epsilon}: expected a non-negative value.")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    @property
    def stores_momentum(self) -> bool:
        """False for ``beta_1 = 0``: then the first moment is the gradient (m = g exactly)."""
        return self.beta_1 != 0.0

    def build(self, var_list) -> None:
        if self.built:
            return
        super().build(var_list)
        if self.stores_momentum:
            self._momentums, self._velocities = self.add_optimizer_variables(
                var_list, ["momentum", "velocity"])
        else:
            self._momentums = []
            self._velocities = self.add_optimizer_variables(var_list, "velocity")
            # Set past attribute tracking: checkpoints see it only as "_variables" below.
            compat.set_untracked(self, "_checkpoint_positions", _CheckpointPositions(self))

    def checkpoint_children(self, children: dict) -> dict:
        positions = self.__dict__.get("_checkpoint_positions")
        if positions is not None and compat.OPTIMIZER_VARIABLES_CHILD in children:
            children[compat.OPTIMIZER_VARIABLES_CHILD] = positions
        return children

    def apply(self, grads, trainable_variables=None):
        # Updates are chained per device (see update_step); each apply starts a new chain.
        self._last_update = {}
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._last_update = {}

    def update_step(self, gradient, variable, learning_rate) -> None:
        # Traced into a graph, the updates of all variables could run at once, each with a
        # few variable-sized temporaries (hundreds of MiB for the generator). One variable
        # after another, as PyTorch does, keeps one variable's temporaries alive at a time.
        chain = getattr(self, "_last_update", None)
        if chain is None or not tf.inside_function():
            return self._update_variable(gradient, variable, learning_rate)
        device = str(getattr(variable, "device", ""))
        previous = chain.get(device)
        with tf.control_dependencies([previous] if previous is not None else []):
            chain[device] = self._update_variable(gradient, variable, learning_rate)

    def _update_variable(self, gradient, variable, learning_rate) -> tf.Tensor:
        """torch.optim.Adam's update of one variable; returns its new value."""
        dtype = variable.dtype
        gradient = tf.cast(gradient, dtype)
        index = compat.variable_index(self, variable)
        v = self._velocities[index]

        if self.stores_momentum:
            # torch.lerp switches formula at weight 0.5; with beta_1 = 0 the second one
            # gives m = g exactly, hence no stored momentum then.
            m = self._momentums[index]
            weight = 1.0 - self.beta_1
            m_value = tf.convert_to_tensor(m)
            if weight < 0.5:
                new_m = m_value + weight * (gradient - m_value)
            else:
                new_m = gradient - (gradient - m_value) * (1.0 - weight)
            self.assign(m, new_m)
            m_value = tf.convert_to_tensor(m)
        else:
            m_value = gradient
        # v.mul_(b2) rounds, then addcmul_ adds ((1 - b2) * g) * g.
        v_value = tf.convert_to_tensor(v) * self.beta_2
        self.assign(v, v_value + ((1.0 - self.beta_2) * gradient) * gradient)

        # PyTorch computes these scalars with Python floats: float64, then rounds them
        # to the parameter dtype inside the kernels. float32 powers would be off by
        # ~1e-5 relative for 1 - 0.999^t in the first steps.
        step = tf.cast(self.iterations + 1, tf.float64)
        bias_correction1 = 1.0 - tf.pow(tf.constant(self.beta_1, tf.float64), step)
        bias_correction2 = 1.0 - tf.pow(tf.constant(self.beta_2, tf.float64), step)
        step_size = tf.cast(tf.cast(learning_rate, tf.float64) / bias_correction1, dtype)
        bias_correction2_sqrt = tf.cast(tf.sqrt(bias_correction2), dtype)

        denom = tf.sqrt(tf.convert_to_tensor(v)) / bias_correction2_sqrt + self.epsilon
        new_value = variable + (-step_size * m_value) / denom
        self.assign(variable, new_value)
        return new_value

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        })
        return config


class _CheckpointPositions(compat.CheckpointNode):
    """An optimizer's variables under the checkpoint names of the layout with momentums:
    ``0`` iterations, ``1`` learning rate, then ``2 + 2 i`` momentum and ``3 + 2 i``
    velocity of the i-th trained variable (keras.optimizers.Adam's order)."""

    def __init__(self, optimizer: TorchAdam) -> None:
        velocities = compat.optimizer_velocities(optimizer)
        leading = len(optimizer.variables) - len(velocities)
        children = {str(index): variable
                    for index, variable in enumerate(optimizer.variables[:leading])}
        children.update({str(leading + 2 * index + 1): velocity
                         for index, velocity in enumerate(velocities)})
        super().__init__(children)


def make_optimizer(name: str, learning_rate: float, beta_1: float = 0.0,
                   beta_2: float = 0.9) -> keras.optimizers.Optimizer:
    """``train.optimizer`` -> an optimizer; defaults are the reference's (beta1 0, beta2 0.9).

    ``"torch_adam"``: :class:`TorchAdam` (epsilon 1e-8 after bias correction, as PyTorch);
    ``"keras_adam"``: ``keras.optimizers.Adam`` (epsilon 1e-7 before bias correction).
    """
    if name == "torch_adam":
        return TorchAdam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2)
    if name == "keras_adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2)
    raise ValueError(f"optimizer {name!r} is unknown: expected 'torch_adam' or 'keras_adam'.")
