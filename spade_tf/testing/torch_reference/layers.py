"""The reference's building blocks in PyTorch: spectral norm, SPADE, CLADE and the residual block.

Module attribute names make ``state_dict()`` keys, shapes and order those of the
reference's checkpoints (see the package docstring). CLADE's (``norm_mode="clade"``) are
those of its official fork (tzt101/CLADE): per norm, ``param_free_norm``,
``class_specified_affine.weight`` / ``.bias`` ([classes, channels]), with
``class_specified_affine.dist_conv_w`` / ``dist_conv_b`` (1x1 convs of the 2-channel
distance map) under ``--add_dist``, and ``inst_conv`` (1x1, 1 -> 1) with instance edges.
"""

from __future__ import annotations

from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch_beside_tensorflow()  # Triton kept out: see spade_tf.torch_import
nn = torch.nn
F = torch.nn.functional

SN_APIS = ("old", "new")
NORM_TYPES = ("sync_batch", "batch", "instance")
NORM_MODES = ("spade", "clade")


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


class ClassAffine(nn.Module):
    """CLADE's per-class scale and shift: tables [classes, channels], looked up by arg-max.

    ``weight`` starts uniform in [0, 1) and ``bias`` at zero (the reference's weight
    initialisation touches only convs, linears and batch norms). With ``add_dist`` the
    looked-up values are scaled by ``1 + conv1x1(distance map)`` (CLADE-ICPE).
    """

    def __init__(self, label_nc: int, affine_nc: int, add_dist: bool = False) -> None:
        super().__init__()
        self.add_dist = add_dist
        self.weight = nn.Parameter(torch.empty(label_nc, affine_nc).uniform_())
        self.bias = nn.Parameter(torch.zeros(label_nc, affine_nc))
        if add_dist:
            self.dist_conv_w = nn.Conv2d(2, 1, 1)
            self.dist_conv_b = nn.Conv2d(2, 1, 1)

    def forward(self, x: torch.Tensor, classes: torch.Tensor,
                dist: torch.Tensor | None = None) -> torch.Tensor:
        ids = classes.argmax(1)  # [N, H, W]
        gamma = F.embedding(ids, self.weight).permute(0, 3, 1, 2)
        beta = F.embedding(ids, self.bias).permute(0, 3, 1, 2)
        if self.add_dist:
            dist = F.interpolate(dist, size=x.shape[2:], mode="nearest")
            gamma = gamma * (1 + self.dist_conv_w(dist))
            beta = beta * (1 + self.dist_conv_b(dist))
        return x * gamma + beta


class CLADE(nn.Module):
    """Parameter-free norm, then per-class affine; with instance edges (the map's last
    channel) a 1x1 conv of the edge map is concatenated: one channel more than ``x``."""

    def __init__(self, norm_nc: int, label_nc: int, norm_type: str = "batch",
                 use_instance_edges: bool = False, add_dist: bool = False) -> None:
        super().__init__()
        self.use_instance_edges = use_instance_edges
        self.param_free_norm = _param_free_norm(norm_nc, norm_type)
        self.class_specified_affine = ClassAffine(label_nc, norm_nc, add_dist)
        if use_instance_edges:
            self.inst_conv = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor,
                dist: torch.Tensor | None = None) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        classes = segmap[:, :-1] if self.use_instance_edges else segmap
        out = self.class_specified_affine(normalized, classes, dist)
        if self.use_instance_edges:
            out = torch.cat([out, self.inst_conv(segmap[:, -1:])], dim=1)
        return out


class SPADEResBlock(nn.Module):
    """Residual block with SPADE (or CLADE) norms; the shortcut is learned iff fin != fout.

    ``label_nc`` is the semantic map's channel count (edges included). With CLADE and
    instance edges each norm adds a channel, so every conv takes one input channel more.
    """

    def __init__(
        self,
        fin: int,
        fout: int,
        label_nc: int,
        use_spectral: bool = True,
        norm_type: str = "batch",
        sn_api: str = "old",
        spade_hidden: int = 128,
        norm_mode: str = "spade",
        use_instance_edges: bool = False,
        add_dist: bool = False,
    ) -> None:
        super().__init__()
        if norm_mode not in NORM_MODES:
            raise ValueError(f"norm_mode must be one of {NORM_MODES}, got {norm_mode!r}")
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        extra = 1 if norm_mode == "clade" and use_instance_edges else 0
        wrap = (lambda m: spectral_norm(m, sn_api)) if use_spectral else (lambda m: m)
        self.conv_0 = wrap(nn.Conv2d(fin + extra, fmiddle, 3, padding=1))
        self.conv_1 = wrap(nn.Conv2d(fmiddle + extra, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = wrap(nn.Conv2d(fin + extra, fout, 1, bias=False))

        def norm(channels: int) -> nn.Module:
            if norm_mode == "clade":
                return CLADE(channels, label_nc - extra, norm_type=norm_type,
                             use_instance_edges=use_instance_edges, add_dist=add_dist)
            return SPADE(channels, label_nc, spade_hidden, norm_type=norm_type)

        self.norm_0 = norm(fin)
        self.norm_1 = norm(fmiddle)
        if self.learned_shortcut:
            self.norm_s = norm(fin)

    def forward(self, x: torch.Tensor, seg: torch.Tensor,
                dist: torch.Tensor | None = None) -> torch.Tensor:
        extra = () if dist is None else (dist,)
        x_s = self.conv_s(self.norm_s(x, seg, *extra)) if self.learned_shortcut else x
        dx = self.conv_0(leaky_relu(self.norm_0(x, seg, *extra)))
        dx = self.conv_1(leaky_relu(self.norm_1(dx, seg, *extra)))
        return x_s + dx
