"""The multi-scale PatchGAN discriminator of pix2pixHD / SPADE."""

from __future__ import annotations

import keras

from spade_tf.layers.common import (
    LEAKY_RELU_SLOPE,
    LeakyReLU,
    check_norm_type,
    maybe_spectral,
    parameter_free_norm,
    reference_conv,
)
from spade_tf.layers.pooling import AveragePoolExcludingPadding
from spade_tf.models.base import ConfiguredModel

KERNEL_SIZE = 4
# PyTorch pads ceil((4 - 1) / 2) = 2 pixels on every side; Keras's "same" pads
# asymmetrically, so the padding is explicit.
PADDING = 2
MAX_FILTERS = 512


def patch_discriminator_features(inputs, num_layers: int, base_filters: int,
                                 use_spectral_norm: bool, norm_type: str, prefix: str) -> list:
    """The reference's NLayerDiscriminator on a tensor: every stage's output.

    Stage 0 is conv (bias) + LeakyReLU; stages 1..num_layers-1 are conv (no bias,
    optional spectral norm) + parameter-free norm + LeakyReLU; the last stage is
    a 1-channel conv (bias). Strides are 2 except for the last two stages.
    """
    features = []
    x = inputs
    filters = base_filters
    for stage in range(num_layers + 1):
        name = f"{prefix}model{stage}"
        stride = 2 if stage == 0 or stage < num_layers - 1 else 1
        x = keras.layers.ZeroPadding2D(PADDING, name=f"{name}_pad")(x)
        if stage == 0:
            x = reference_conv(filters, KERNEL_SIZE, f"{name}_conv", strides=stride,
                               padding="valid")(x)
        elif stage < num_layers:
            filters = min(filters * 2, MAX_FILTERS)
            conv = reference_conv(filters, KERNEL_SIZE, f"{name}_conv", use_bias=False,
                                  strides=stride, padding="valid")
            x = maybe_spectral(conv, use_spectral_norm)(x)
            x = parameter_free_norm(norm_type, f"{name}_norm")(x)
        else:
            x = reference_conv(1, KERNEL_SIZE, f"{name}_conv", padding="valid")(x)
        if stage < num_layers:
            x = LeakyReLU(LEAKY_RELU_SLOPE, name=f"{name}_activation")(x)
        features.append(x)
    return features


@keras.saving.register_keras_serializable(package="spade_tf")
class MultiScaleDiscriminator(ConfiguredModel):
    """PatchGAN discriminators on the input at 1, 1/2, 1/4 ... of its size.

    Inputs (a dict): ``"semantic"`` [B, H, W, semantic_channels] and ``"image"``
    [B, H, W, 3], concatenated in that order as the reference does. Output: one
    list per scale of every stage's features (``num_layers + 1`` tensors); the
    last of each list is the patch logits map. Feature matching uses the others.
    Between scales the input is average-pooled 3x3 with stride 2, excluding padding.

    Args:
        semantic_channels: channels of the semantic map.
        num_discriminators: number of scales (2 in the paper).
        num_layers: strided conv stages per scale (4 in the paper).
        base_filters: filters of the first conv (64), doubled per stage up to 512.
        use_spectral_norm: spectral norm on the normalized convs (the default).
        norm_type: their parameter-free norm (``"instance"`` in the paper).
        image_channels: channels of the image (3).
    """

    config_keys = (
        "semantic_channels",
        "num_discriminators",
        "num_layers",
        "base_filters",
        "use_spectral_norm",
        "norm_type",
        "image_channels",
    )

    def __init__(
        self,
        semantic_channels: int,
        num_discriminators: int = 2,
        num_layers: int = 4,
        base_filters: int = 64,
        use_spectral_norm: bool = True,
        norm_type: str = "instance",
        image_channels: int = 3,
        **kwargs,
    ):
        if semantic_channels < 1 or num_discriminators < 1 or num_layers < 1:
            raise ValueError(
                f"semantic_channels={semantic_channels}, num_discriminators="
                f"{num_discriminators}, num_layers={num_layers}: expected positive values."
            )
        check_norm_type(norm_type)
        semantic = keras.Input((None, None, semantic_channels), name="semantic")
        image = keras.Input((None, None, image_channels), name="image")
        x = keras.layers.Concatenate(name="semantic_and_image")([semantic, image])
        outputs = []
        for scale in range(num_discriminators):
            outputs.append(patch_discriminator_features(
                x, num_layers, base_filters, use_spectral_norm, norm_type,
                prefix=f"discriminator_{scale}_",
            ))
            if scale < num_discriminators - 1:
                x = AveragePoolExcludingPadding(name=f"downsample_{scale}")(x)
        super().__init__(inputs={"semantic": semantic, "image": image}, outputs=outputs,
                         **kwargs)
        self.semantic_channels = semantic_channels
        self.num_discriminators = num_discriminators
        self.num_layers = num_layers
        self.base_filters = base_filters
        self.use_spectral_norm = use_spectral_norm
        self.norm_type = norm_type
        self.image_channels = image_channels

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        # Keras hands a one-element output list back unwrapped: one scale is still a list
        # of scales, each a list of features.
        if getattr(self, "num_discriminators", None) == 1 and not isinstance(outputs[0], list):
            return [outputs]
        return outputs
