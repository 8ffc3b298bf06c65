"""The reference's weight initialisation: PyTorch's ``xavier_normal_`` with gain 0.02."""

from __future__ import annotations

import keras

REFERENCE_INIT_GAIN = 0.02


def reference_initializer(gain: float = REFERENCE_INIT_GAIN) -> keras.initializers.Initializer:
    """Untruncated normal with std ``gain * sqrt(2 / (fan_in + fan_out))``.

    That is ``VarianceScaling(scale=gain**2, mode="fan_avg")`` with an untruncated
    normal (Keras's ``GlorotNormal`` truncates, PyTorch's xavier normal does not).
    Keras computes fans from its (kh, kw, in, out) layout exactly as PyTorch does
    from (out, in, kh, kw). Each layer needs its own instance: Keras initializers
    with an unset seed draw the same values on every call.
    """
    return keras.initializers.VarianceScaling(
        scale=gain**2, mode="fan_avg", distribution="untruncated_normal"
    )
