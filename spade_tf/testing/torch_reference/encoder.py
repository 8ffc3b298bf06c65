"""The reference's VAE style encoder in PyTorch (``latest_net_E.pth``'s keys)."""

from __future__ import annotations

from spade_tf.testing.torch_reference.layers import leaky_relu, spectral_norm
from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch_beside_tensorflow()  # Triton kept out: see spade_tf.torch_import
nn = torch.nn
F = torch.nn.functional


class ConvEncoder(nn.Module):
    """VAE encoder: six stride-2 SN convs + instance norm, then (mu, logvar)."""

    def __init__(
        self, base_filters: int = 64, latent_dim: int = 256, sn_api: str = "old"
    ) -> None:
        super().__init__()
        ndf = base_filters
        channels = [3, ndf, 2 * ndf, 4 * ndf, 8 * ndf, 8 * ndf, 8 * ndf]
        for i in range(6):
            conv = nn.Conv2d(
                channels[i], channels[i + 1], 3, stride=2, padding=1, bias=False
            )
            self.add_module(
                f"layer{i + 1}",
                nn.Sequential(
                    spectral_norm(conv, sn_api), nn.InstanceNorm2d(channels[i + 1], affine=False)
                ),
            )
        self.fc_mu = nn.Linear(8 * ndf * 4 * 4, latent_dim)
        self.fc_var = nn.Linear(8 * ndf * 4 * 4, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[2:] != (256, 256):
            x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
        x = self.layer1(x)
        for i in range(2, 7):
            x = getattr(self, f"layer{i}")(leaky_relu(x))
        x = leaky_relu(x).reshape(x.size(0), -1)  # NCHW flatten, as the reference
        return self.fc_mu(x), self.fc_var(x)
