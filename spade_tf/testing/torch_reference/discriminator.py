"""The reference's multi-scale PatchGAN discriminator in PyTorch (``latest_net_D.pth``'s keys)."""

from __future__ import annotations

from spade_tf.testing.torch_reference.layers import spectral_norm
from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch_beside_tensorflow()  # Triton kept out: see spade_tf.torch_import
nn = torch.nn
F = torch.nn.functional


class NLayerDiscriminator(nn.Module):
    """PatchGAN with children model0..model{n_layers}; returns every stage's output."""

    def __init__(
        self,
        input_nc: int,
        base_filters: int = 64,
        n_layers: int = 4,
        sn_api: str = "old",
    ) -> None:
        super().__init__()
        nf = base_filters
        # kernel 4, padding 2 on both sides: the output grows by one per stride-1 layer.
        stages: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(input_nc, nf, 4, stride=2, padding=2), nn.LeakyReLU(0.2)
            )
        ]
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            conv = spectral_norm(
                nn.Conv2d(nf_prev, nf, 4, stride=stride, padding=2, bias=False), sn_api
            )
            stages.append(
                nn.Sequential(
                    nn.Sequential(conv, nn.InstanceNorm2d(nf, affine=False)),
                    nn.LeakyReLU(0.2),
                )
            )
        stages.append(nn.Sequential(nn.Conv2d(nf, 1, 4, stride=1, padding=2)))
        for i, stage in enumerate(stages):
            self.add_module(f"model{i}", stage)
        self.num_stages = len(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        results = []
        for i in range(self.num_stages):
            x = getattr(self, f"model{i}")(x)
            results.append(x)
        return results


class MultiscaleDiscriminator(nn.Module):
    """PatchGANs on successively avg-pooled copies of cat[semantic, RGB]."""

    def __init__(
        self,
        input_nc: int,
        num_scales: int = 2,
        n_layers: int = 4,
        base_filters: int = 64,
        sn_api: str = "old",
    ) -> None:
        super().__init__()
        self.num_scales = num_scales
        for i in range(num_scales):
            self.add_module(
                f"discriminator_{i}",
                NLayerDiscriminator(input_nc, base_filters, n_layers, sn_api=sn_api),
            )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for i in range(self.num_scales):
            results.append(getattr(self, f"discriminator_{i}")(x))
            # Padded pixels are not counted: border averages use only real pixels.
            x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return results
