"""The VAE style encoder: photo -> mean and log-variance of the style latent."""

from __future__ import annotations

import keras

from spade_tf.layers.common import (
    LEAKY_RELU_SLOPE,
    LeakyReLU,
    check_norm_type,
    maybe_spectral,
    parameter_free_norm,
    reference_conv,
    reference_initializer,
)
from spade_tf.models.base import ConfiguredModel

NUM_STAGES = 6


@keras.saving.register_keras_serializable(package="spade_tf")
class VAEEncoder(ConfiguredModel):
    """Image in [-1, 1] -> ``{"mean", "log_variance"}`` of a ``latent_dim`` Gaussian.

    The photo is resized (bilinear, half-pixel centres as PyTorch's
    ``align_corners=False``) to ``input_size`` squared, then six 3x3 stride-2
    convs (no bias, optional spectral norm, parameter-free norm) with
    LeakyReLU 0.2 between them take it to ``input_size / 64`` squared with
    ``8 * base_filters`` channels. That map is flattened in the reference's NCHW
    order and fed to two dense layers, ``fc_mu`` and ``fc_var``.

    Args:
        base_filters: filters of the first conv (64), doubled up to 8x.
        latent_dim: size of the style latent (256).
        input_size: side of the resized input (256 in the paper; a multiple of 64, >= 128).
        use_spectral_norm: spectral norm on the six convs (the default).
        norm_type: their parameter-free norm (``"instance"`` in the paper).
    """

    config_keys = (
        "base_filters",
        "latent_dim",
        "input_size",
        "use_spectral_norm",
        "norm_type",
    )

    def __init__(self, base_filters: int = 64, latent_dim: int = 256, input_size: int = 256,
                 use_spectral_norm: bool = True, norm_type: str = "instance", **kwargs):
        if input_size < 128 or input_size % 64:
            raise ValueError(
                f"input_size={input_size}: expected a multiple of 64 of at least 128 (six "
                "stride-2 convs; instance norm of a 1x1 map would erase it)."
            )
        check_norm_type(norm_type)
        image = keras.Input((None, None, 3), name="image")
        x = keras.layers.Resizing(input_size, input_size, interpolation="bilinear",
                                  name="resize")(image)
        filters = [base_filters * min(2**stage, 8) for stage in range(NUM_STAGES)]
        for stage, stage_filters in enumerate(filters, start=1):
            if stage > 1:
                x = LeakyReLU(LEAKY_RELU_SLOPE, name=f"layer{stage}_input_act")(x)
            # PyTorch's padding=1 on both sides; Keras's "same" would pad only the end.
            x = keras.layers.ZeroPadding2D(1, name=f"layer{stage}_pad")(x)
            conv = reference_conv(stage_filters, 3, f"layer{stage}_conv", use_bias=False,
                                  strides=2, padding="valid")
            x = maybe_spectral(conv, use_spectral_norm)(x)
            x = parameter_free_norm(norm_type, f"layer{stage}_norm")(x)
        x = LeakyReLU(LEAKY_RELU_SLOPE, name="output_act")(x)
        # Flatten in NCHW order so the dense weights are the reference's.
        x = keras.layers.Permute((3, 1, 2), name="to_nchw")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        outputs = {
            "mean": keras.layers.Dense(latent_dim, name="fc_mu", dtype="float32",
                                       kernel_initializer=reference_initializer())(x),
            "log_variance": keras.layers.Dense(latent_dim, name="fc_var", dtype="float32",
                                               kernel_initializer=reference_initializer())(x),
        }
        super().__init__(inputs=image, outputs=outputs, **kwargs)
        self.base_filters = base_filters
        self.latent_dim = latent_dim
        self.input_size = input_size
        self.use_spectral_norm = use_spectral_norm
        self.norm_type = norm_type
