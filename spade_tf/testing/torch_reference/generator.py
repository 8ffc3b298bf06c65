"""The reference's SPADE generator in PyTorch (``latest_net_G.pth``'s keys); with
``norm_mode="clade"`` the CLADE fork's (``best_net_G.pth``'s keys)."""

from __future__ import annotations

from spade_tf.testing.torch_reference.layers import SPADEResBlock, leaky_relu
from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch_beside_tensorflow()  # Triton kept out: see spade_tf.torch_import
nn = torch.nn
F = torch.nn.functional

UPSAMPLING_LAYERS = {"normal": 5, "more": 6, "most": 7}


class SPADEGenerator(nn.Module):
    """fc, head_0, G_middle_0/1, up_0..up_3 (+ up_4 for 'most'), conv_img, tanh."""

    def __init__(
        self,
        semantic_nc: int,
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        num_upsampling_layers: str = "normal",
        use_vae: bool = False,
        base_filters: int = 64,
        latent_dim: int = 256,
        norm_type: str = "batch",
        sn_api: str = "old",
        spade_hidden: int = 128,
        norm_mode: str = "spade",
        use_instance_edges: bool = False,
        add_dist: bool = False,
    ) -> None:
        super().__init__()
        if num_upsampling_layers not in UPSAMPLING_LAYERS:
            raise ValueError(
                f"num_upsampling_layers must be one of {sorted(UPSAMPLING_LAYERS)}, "
                f"got {num_upsampling_layers!r}"
            )
        nf = base_filters
        self.num_upsampling_layers = num_upsampling_layers
        self.use_vae = use_vae
        self.latent_dim = latent_dim
        self.sw = crop_size // 2 ** UPSAMPLING_LAYERS[num_upsampling_layers]
        self.sh = round(self.sw / aspect_ratio)
        if self.sw < 1 or self.sh < 1:
            raise ValueError(
                f"crop_size {crop_size}, aspect_ratio {aspect_ratio} and "
                f"{num_upsampling_layers!r} upsampling give a {self.sh}x{self.sw} "
                "start map; use a larger crop_size or fewer upsampling layers"
            )
        if use_vae:
            self.fc = nn.Linear(latent_dim, 16 * nf * self.sh * self.sw)
        else:
            self.fc = nn.Conv2d(semantic_nc, 16 * nf, 3, padding=1)

        def block(fin: int, fout: int) -> SPADEResBlock:
            return SPADEResBlock(
                fin,
                fout,
                semantic_nc,
                norm_type=norm_type,
                sn_api=sn_api,
                spade_hidden=spade_hidden,
                norm_mode=norm_mode,
                use_instance_edges=use_instance_edges,
                add_dist=add_dist,
            )

        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)
        self.G_middle_1 = block(16 * nf, 16 * nf)
        self.up_0 = block(16 * nf, 8 * nf)
        self.up_1 = block(8 * nf, 4 * nf)
        self.up_2 = block(4 * nf, 2 * nf)
        self.up_3 = block(2 * nf, nf)
        final_nc = nf
        if num_upsampling_layers == "most":
            self.up_4 = block(nf, nf // 2)
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, 3, 3, padding=1)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None,
                dist: torch.Tensor | None = None) -> torch.Tensor:
        """``dist``: CLADE-ICPE's [N, 2, H, W] distance map (``add_dist`` only)."""
        if self.use_vae:
            if z is None:
                z = torch.randn(
                    seg.size(0), self.latent_dim, dtype=seg.dtype, device=seg.device
                )
            x = self.fc(z).view(
                -1, self.fc.out_features // (self.sh * self.sw), self.sh, self.sw
            )
        else:
            x = self.fc(F.interpolate(seg, size=(self.sh, self.sw), mode="nearest"))
        extra = () if dist is None else (dist,)
        x = self.head_0(x, seg, *extra)
        x = self._up(x)
        x = self.G_middle_0(x, seg, *extra)
        if self.num_upsampling_layers in ("more", "most"):
            x = self._up(x)
        x = self.G_middle_1(x, seg, *extra)
        ups = [self.up_0, self.up_1, self.up_2, self.up_3]
        if self.num_upsampling_layers == "most":
            ups.append(self.up_4)
        for up in ups:
            x = up(self._up(x), seg, *extra)
        return torch.tanh(self.conv_img(leaky_relu(x)))
