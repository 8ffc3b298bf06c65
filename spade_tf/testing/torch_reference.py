"""A small PyTorch SPADE/GauGAN: the ground truth of the parity tests and benchmarks.

Written from the layout facts in ``shared/REFERENCE_CHECKPOINTS.md`` and the fidelity
facts in ``shared/DESIGN.md`` (section 5); no code is taken from the reference. Module
attribute names are chosen so that ``state_dict()`` keys, shapes and order match the
reference's checkpoints: the converter under test only ever sees those keys.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SN_APIS = ("old", "new")
NORM_TYPES = ("sync_batch", "batch", "instance")
UPSAMPLING_LAYERS = {"normal": 5, "more": 6, "most": 7}


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def _sn(module: nn.Module, sn_api: str) -> nn.Module:
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
    ) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        wrap = (lambda m: _sn(m, sn_api)) if use_spectral else (lambda m: m)
        self.conv_0 = wrap(nn.Conv2d(fin, fmiddle, 3, padding=1))
        self.conv_1 = wrap(nn.Conv2d(fmiddle, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = wrap(nn.Conv2d(fin, fout, 1, bias=False))
        self.norm_0 = SPADE(fin, label_nc, norm_type=norm_type)
        self.norm_1 = SPADE(fmiddle, label_nc, norm_type=norm_type)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc, norm_type=norm_type)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(_lrelu(self.norm_0(x, seg)))
        dx = self.conv_1(_lrelu(self.norm_1(dx, seg)))
        return x_s + dx


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
                fin, fout, semantic_nc, norm_type=norm_type, sn_api=sn_api
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

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
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
        x = self.head_0(x, seg)
        x = self._up(x)
        x = self.G_middle_0(x, seg)
        if self.num_upsampling_layers in ("more", "most"):
            x = self._up(x)
        x = self.G_middle_1(x, seg)
        ups = [self.up_0, self.up_1, self.up_2, self.up_3]
        if self.num_upsampling_layers == "most":
            ups.append(self.up_4)
        for up in ups:
            x = up(self._up(x), seg)
        return torch.tanh(self.conv_img(_lrelu(x)))


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
            conv = _sn(
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
                    _sn(conv, sn_api), nn.InstanceNorm2d(channels[i + 1], affine=False)
                ),
            )
        self.fc_mu = nn.Linear(8 * ndf * 4 * 4, latent_dim)
        self.fc_var = nn.Linear(8 * ndf * 4 * 4, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[2:] != (256, 256):
            x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
        x = self.layer1(x)
        for i in range(2, 7):
            x = getattr(self, f"layer{i}")(_lrelu(x))
        x = _lrelu(x).reshape(x.size(0), -1)  # NCHW flatten, as the reference
        return self.fc_mu(x), self.fc_var(x)


def _spectral_norms(
    module: nn.Module,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (weight, u, v) of every spectrally normalised layer, for either API."""
    for m in module.modules():
        if hasattr(m, "weight_orig") and hasattr(m, "weight_u"):
            yield m.weight_orig, m.weight_u, m.weight_v
        elif hasattr(m, "parametrizations") and "weight" in m.parametrizations:
            plist = m.parametrizations.weight
            yield plist.original, plist[0]._u, plist[0]._v


@torch.no_grad()
def randomize_(module: nn.Module, seed: int, power_iterations: int = 3) -> nn.Module:
    """Give every weight and buffer random values that make a sharp parity subject.

    Kernels get std 1/sqrt(fan_in) (not the training init's 0.02 gain, under which the
    SPADE modulation and biases would be too small to expose a conversion error), biases
    and batch-norm running statistics are random, and the spectral-norm vectors u, v are
    fresh random vectors refined by a few power iterations, which is exactly what
    training-mode forward passes would do. Depends only on ``seed``, not on the global
    RNG. Returns the module in eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            weight = m.weight_orig if hasattr(m, "weight_orig") else None
            if weight is None and hasattr(m, "parametrizations"):
                weight = m.parametrizations.weight.original
            if weight is None:
                weight = m.weight
            fan_in = weight[0].numel()
            weight.normal_(0.0, fan_in**-0.5, generator=g)
            if m.bias is not None:
                m.bias.uniform_(-0.2, 0.2, generator=g)
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.num_batches_tracked.fill_(100)
    for weight, u, v in _spectral_norms(module):
        w_mat = weight.reshape(weight.size(0), -1)  # dim 0 is the output axis here
        # Not run to convergence on purpose: a converter that recomputes sigma instead
        # of using the stored u, v then fails parity visibly.
        u.copy_(F.normalize(torch.randn(u.shape, generator=g), dim=0, eps=1e-12))
        for _ in range(power_iterations):
            v.copy_(F.normalize(w_mat.t() @ u, dim=0, eps=1e-12))
            u.copy_(F.normalize(w_mat @ v, dim=0, eps=1e-12))
    return module.eval()


def save_state_dict(module: nn.Module, path: str, data_parallel: bool = False) -> None:
    """``torch.save`` the state dict; ``data_parallel`` prefixes keys ``module.``."""
    state = module.state_dict()
    if data_parallel:
        state = OrderedDict((f"module.{k}", v) for k, v in state.items())
    torch.save(state, path)


def count_trainable(module: nn.Module) -> int:
    """Number of trainable scalars (spectral-norm u, v are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def instance_edges(instance_ids: np.ndarray) -> np.ndarray:
    """Bool [B, H, W]: True where the id differs from any 4-neighbour."""
    t = np.asarray(instance_ids)
    edge = np.zeros(t.shape, dtype=bool)
    horizontal = t[:, :, 1:] != t[:, :, :-1]
    vertical = t[:, 1:, :] != t[:, :-1, :]
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    edge[:, 1:, :] |= vertical
    edge[:, :-1, :] |= vertical
    return edge


def semantic_one_hot(
    label_ids: np.ndarray,
    num_classes: int,
    dontcare_label: int | None = None,
    instance_ids: np.ndarray | None = None,
) -> torch.Tensor:
    """Float32 NCHW semantic input: one-hot classes [+ don't-care] [+ instance edges].

    ``dontcare_label`` (e.g. 255) maps to channel ``num_classes``; the edge channel,
    when ``instance_ids`` are given, comes last. Other ids outside [0, num_classes)
    raise ``ValueError``.
    """
    ids = np.asarray(label_ids)
    if ids.ndim != 3 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"label_ids must be an integer array [B, H, W], got {ids.dtype} {ids.shape}"
        )
    if dontcare_label is not None and 0 <= dontcare_label < num_classes:
        raise ValueError(
            f"dontcare_label {dontcare_label} collides with class ids "
            f"0..{num_classes - 1}; use an id >= num_classes such as 255"
        )
    ids = ids.astype(np.int64)
    is_dontcare = (
        ids == dontcare_label
        if dontcare_label is not None
        else np.zeros(ids.shape, bool)
    )
    bad = ((ids < 0) | (ids >= num_classes)) & ~is_dontcare
    if bad.any():
        raise ValueError(
            f"label ids {np.unique(ids[bad]).tolist()[:10]} are out of range: expected "
            f"0..{num_classes - 1}"
            + (
                f" or {dontcare_label} (don't-care)"
                if dontcare_label is not None
                else ""
            )
            + "; fix num_classes/dontcare_label or the label maps"
        )
    depth = num_classes + (dontcare_label is not None)
    ids = np.where(is_dontcare, num_classes, ids)
    onehot = np.eye(depth, dtype=np.float32)[ids].transpose(0, 3, 1, 2)
    if instance_ids is not None:
        inst = np.asarray(instance_ids)
        if inst.shape != ids.shape:
            raise ValueError(
                f"instance_ids shape {inst.shape} must equal label_ids shape "
                f"{ids.shape}"
            )
        edges = instance_edges(inst).astype(np.float32)[:, None]
        onehot = np.concatenate([onehot, edges], axis=1)
    return torch.from_numpy(np.ascontiguousarray(onehot))
