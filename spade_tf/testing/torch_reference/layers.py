"""The reference's building blocks in PyTorch: spectral norm, SPADE and the SPADE residual block.

Module attribute names make ``state_dict()`` keys, shapes and order those of the
reference's checkpoints (see the package docstring).
"""

from __future__ import annotations

from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch_beside_tensorflow()  # Triton kept out: see spade_tf.torch_import
nn = torch.nn
F = torch.nn.functional

SN_APIS = ("old", "new")
NORM_TYPES = ("sync_batch", "batch", "instance")


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def spectral_norm(module: nn.Module, sn_api: str) -> nn.Module:
    """Wrap ``module`` in spectral norm; the API decides the state_dict key names."""
    if sn_api == "old":  # weight_orig, weight_u, weight_v
        return nn.utils.spectral_norm(module)
    if sn_api == "new":  # parametrizations.weight.original, ...0._u, ...0._v
        return nn.utils.parametrizations.spectral_norm(module)
    raise ValueError(f"sn_api must be one of {SN_APIS}, got {sn_api!r}")


def _param_free_norm(channels: int, norm_type: str) -> nn.Module:
    # Single-process sync batch norm is plain batch norm, with the same keys.
    if norm_type in ("sync_batch", "batch"):
        return nn.BatchNorm2d(channels, affine=False, eps=1e-5, momentum=0.1)
    if norm_type == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")


class SPADE(nn.Module):
    """Parameter-free norm modulated by gamma/beta predicted from the label map."""

    def __init__(
        self,
        norm_nc: int,
        label_nc: int,
        hidden: int = 128,
        kernel_size: int = 3,
        norm_type: str = "batch",
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.param_free_norm = _param_free_norm(norm_nc, norm_type)
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(label_nc, hidden, kernel_size, padding=pad), nn.ReLU()
        )
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        # mode="nearest" is torch's legacy nearest: source index floor(i * in / out).
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResBlock(nn.Module):
    """Residual block with SPADE norms; the shortcut is learned iff fin != fout."""

    def __init__(
        self,
        fin: int,
        fout: int,
        label_nc: int,
        use_spectral: bool = True,
        norm_type: str = "batch",
        sn_api: str = "old",
        spade_hidden: int = 128,
    ) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        wrap = (lambda m: spectral_norm(m, sn_api)) if use_spectral else (lambda m: m)
        self.conv_0 = wrap(nn.Conv2d(fin, fmiddle, 3, padding=1))
        self.conv_1 = wrap(nn.Conv2d(fmiddle, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = wrap(nn.Conv2d(fin, fout, 1, bias=False))
        self.norm_0 = SPADE(fin, label_nc, spade_hidden, norm_type=norm_type)
        self.norm_1 = SPADE(fmiddle, label_nc, spade_hidden, norm_type=norm_type)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc, spade_hidden, norm_type=norm_type)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(leaky_relu(self.norm_0(x, seg)))
        dx = self.conv_1(leaky_relu(self.norm_1(dx, seg)))
        return x_s + dx
