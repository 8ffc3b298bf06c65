"""The SPADE generator (GauGAN), built as a functional Keras model."""

from __future__ import annotations

import keras

from spade_tf.geometry import UPSAMPLING_COUNTS, generator_geometry
from spade_tf.layers.common import (
    LEAKY_RELU_SLOPE,
    LeakyReLU,
    check_norm_type,
    reference_conv,
    reference_initializer,
)
from spade_tf.layers.residual_block import SPADEResBlock
from spade_tf.layers.resize import LegacyNearestResize
from spade_tf.models.base import ConfiguredModel


@keras.saving.register_keras_serializable(package="spade_tf")
class SPADEGenerator(ConfiguredModel):
    """Semantic map (and, with a VAE, a style latent) -> RGB image in [-1, 1].

    The SPADE generator, or with ``norm_mode="clade"`` the CLADE one (Tan et al.): the
    same backbone with per-class modulation instead of SPADE's convolutions.

    Inputs (a dict): ``"semantic"``, float [B, H, W, semantic_channels] (the
    one-hot map of :class:`~spade_tf.layers.SemanticInput`), and with
    ``use_vae=True`` also ``"latent"``, float [B, latent_dim]. ``H x W`` is the
    image size, ``image_height x crop_size``.

    Layer names follow the reference (``fc``, ``head_0``, ``G_middle_0``,
    ``G_middle_1``, ``up_0`` ... ``up_4``, ``conv_img``), which keeps the
    checkpoint converter a table.

    Args:
        semantic_channels: channels of the semantic input (classes, don't-care,
            instance edges).
        crop_size: output width.
        aspect_ratio: width / height of the output.
        num_upsampling_layers: ``"normal"`` (5 doublings), ``"more"`` (6) or
            ``"most"`` (7, adds ``up_4``).
        base_filters: channels of the last block (64 in the paper); the first
            blocks have 16 times as many.
        use_vae: start from a latent vector (Dense) instead of the downsized
            semantic map (conv).
        latent_dim: size of the latent vector.
        norm_type, use_spectral_norm, spade_hidden_filters, spade_kernel_size: as
            in :class:`~spade_tf.layers.SPADEResBlock`.
        norm_mode: ``"spade"`` (the reference) or ``"clade"``: every block modulates
            with :class:`~spade_tf.layers.CLADE` (per-class gamma and beta).
        use_instance_edges: the semantic input's last channel is the instance-edge map
            (CLADE takes it apart from the classes; SPADE convolves it with them).
    """

    config_keys = (
        "semantic_channels",
        "crop_size",
        "aspect_ratio",
        "num_upsampling_layers",
        "base_filters",
        "use_vae",
        "latent_dim",
        "norm_type",
        "use_spectral_norm",
        "spade_hidden_filters",
        "spade_kernel_size",
        "norm_mode",
        "use_instance_edges",
    )

    def __init__(
        self,
        semantic_channels: int,
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        num_upsampling_layers: str = "normal",
        base_filters: int = 64,
        use_vae: bool = False,
        latent_dim: int = 256,
        norm_type: str = "sync_batch",
        use_spectral_norm: bool = True,
        spade_hidden_filters: int = 128,
        spade_kernel_size: int = 3,
        norm_mode: str = "spade",
        use_instance_edges: bool = False,
        **kwargs,
    ):
        if semantic_channels < 1:
            raise ValueError(f"semantic_channels={semantic_channels}: expected at least 1.")
        check_norm_type(norm_type)
        start_height, start_width, height, width = generator_geometry(
            crop_size, aspect_ratio, num_upsampling_layers
        )
        nf = base_filters
        semantic = keras.Input((height, width, semantic_channels), name="semantic")
        inputs = {"semantic": semantic}
        if use_vae:
            latent = keras.Input((latent_dim,), name="latent")
            inputs["latent"] = latent
            x = keras.layers.Dense(
                16 * nf * start_height * start_width, name="fc",
                kernel_initializer=reference_initializer(),
            )(latent)
            # The reference views the dense output as NCHW; keep its order.
            x = keras.layers.Reshape((16 * nf, start_height, start_width), name="fc_reshape")(x)
            x = keras.layers.Permute((2, 3, 1), name="fc_to_nhwc")(x)
        else:
            x = LegacyNearestResize(start_height, start_width, name="fc_resize")(semantic)
            x = reference_conv(16 * nf, 3, "fc")(x)

        block_args = {
            "norm_type": norm_type,
            "use_spectral_norm": use_spectral_norm,
            "hidden_filters": spade_hidden_filters,
            "kernel_size": spade_kernel_size,
            "norm_mode": norm_mode,
            "use_instance_edges": use_instance_edges,
        }
        upsamplings = iter(range(UPSAMPLING_COUNTS[num_upsampling_layers]))

        def upsample(tensor):
            return keras.layers.UpSampling2D(2, name=f"upsample_{next(upsamplings)}")(tensor)

        x = SPADEResBlock(16 * nf, name="head_0", **block_args)(x, semantic)
        x = upsample(x)
        x = SPADEResBlock(16 * nf, name="G_middle_0", **block_args)(x, semantic)
        if num_upsampling_layers in ("more", "most"):
            x = upsample(x)
        x = SPADEResBlock(16 * nf, name="G_middle_1", **block_args)(x, semantic)
        up_filters = [8 * nf, 4 * nf, 2 * nf, nf]
        if num_upsampling_layers == "most":
            up_filters.append(nf // 2)
        for index, filters in enumerate(up_filters):
            x = upsample(x)
            x = SPADEResBlock(filters, name=f"up_{index}", **block_args)(x, semantic)
        x = LeakyReLU(LEAKY_RELU_SLOPE, name="conv_img_activation")(x)
        x = reference_conv(3, 3, "conv_img")(x)
        # Float32 output under mixed precision: images and losses stay exact.
        image = keras.layers.Activation("tanh", dtype="float32", name="image")(x)

        super().__init__(inputs=inputs, outputs=image, **kwargs)
        self.semantic_channels = semantic_channels
        self.crop_size = crop_size
        self.aspect_ratio = aspect_ratio
        self.num_upsampling_layers = num_upsampling_layers
        self.base_filters = base_filters
        self.use_vae = use_vae
        self.latent_dim = latent_dim
        self.norm_type = norm_type
        self.use_spectral_norm = use_spectral_norm
        self.spade_hidden_filters = spade_hidden_filters
        self.spade_kernel_size = spade_kernel_size
        self.norm_mode = norm_mode
        self.use_instance_edges = use_instance_edges
        self.image_height = height
        self.image_width = width
