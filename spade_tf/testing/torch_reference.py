"""A small PyTorch SPADE/GauGAN: the ground truth of the parity tests and benchmarks.

Written from the layout facts in ``shared/REFERENCE_CHECKPOINTS.md`` and the fidelity
facts in ``shared/DESIGN.md`` (section 5); no code is taken from the reference. Module
attribute names are chosen so that ``state_dict()`` keys, shapes and order match the
reference's checkpoints: the converter under test only ever sees those keys.

Training pieces (end of the file): the hinge, feature-matching, VGG19 and KL terms, a
VGG19 feature stack with torchvision's layout (``VGG19Features``) and one training
iteration, G step then D step (``ReferenceGauGAN``), for the training-parity tests.
"""

from __future__ import annotations

import contextlib
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
        spade_hidden: int = 128,
    ) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        wrap = (lambda m: _sn(m, sn_api)) if use_spectral else (lambda m: m)
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
        spade_hidden: int = 128,
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


# -- networks for a spade_tf config, randomised (parity tests, benchmarks) ---------------


def torch_generator(config, seed: int = 0, sn_api: str = "old") -> SPADEGenerator:
    """The reference generator for ``config`` (a ``spade_tf.config.Config``), randomised."""
    model = config.model
    network = SPADEGenerator(
        model.semantic_channels, crop_size=model.crop_size, aspect_ratio=model.aspect_ratio,
        num_upsampling_layers=model.num_upsampling_layers, use_vae=model.use_vae,
        base_filters=model.base_filters, latent_dim=model.latent_dim, sn_api=sn_api,
    )
    return randomize_(network, seed)


def torch_discriminator(config, seed: int = 1, sn_api: str = "old") -> MultiscaleDiscriminator:
    """The reference multi-scale discriminator for ``config``, randomised."""
    model = config.model
    network = MultiscaleDiscriminator(
        model.semantic_channels + 3, num_scales=model.num_discriminators,
        n_layers=model.disc_layers, base_filters=model.disc_filters, sn_api=sn_api,
    )
    return randomize_(network, seed)


def torch_encoder(config, seed: int = 2, sn_api: str = "old") -> ConvEncoder:
    """The reference style encoder for ``config``, randomised."""
    model = config.model
    network = ConvEncoder(base_filters=model.encoder_filters, latent_dim=model.latent_dim,
                          sn_api=sn_api)
    return randomize_(network, seed)

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


# -- training: the reference's losses, VGG19 features and one G + D step ----------------
#
# Written from the facts in shared/DESIGN.md section 5 (losses, optimisation). Each loss
# is computed on one GPU's share of the batch and the GPUs' values are averaged, which is
# what the reference's data parallelism does with them; with synchronized batch norm
# (one process: plain BatchNorm2d on the whole batch) only the KL term, a sum over each
# GPU's examples, depends on how many GPUs share the batch.

VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
# torchvision's vgg19.features: convs (channels) with ReLU after each, "M" max-pools.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# End (exclusive) of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in that sequence.
VGG19_FEATURE_ENDS = (2, 7, 12, 21, 30)


class VGG19Features(nn.Module):
    """torchvision's ``vgg19().features`` layout (same state_dict keys), frozen.

    ``forward`` returns relu1_1 ... relu5_1 of images fed as they are (the reference
    feeds [-1, 1] images without ImageNet normalisation).
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)

    @torch.no_grad()
    def randomize_(self, seed: int) -> VGG19Features:
        """He-normal kernels (activations keep their scale) and small random biases."""
        g = torch.Generator().manual_seed(seed)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, (2.0 / m.weight[0].numel()) ** 0.5, generator=g)
                m.bias.uniform_(-0.05, 0.05, generator=g)
        return self.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs, start = [], 0
        for end in VGG19_FEATURE_ENDS:
            x = self.features[start:end](x)
            outputs.append(x)
            start = end
        return outputs


def _logits(outputs: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [scale[-1] for scale in outputs]


def hinge_generator_loss(fake_outputs: list[list[torch.Tensor]]) -> torch.Tensor:
    """-mean(D(fake)) per scale, averaged over the scales."""
    logits = _logits(fake_outputs)
    return sum(-x.mean() for x in logits) / len(logits)


def hinge_discriminator_loss(outputs: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    """mean(relu(1 - D(real))) or mean(relu(1 + D(fake))) per scale, averaged."""
    logits = _logits(outputs)
    sign = -1.0 if real else 1.0
    return sum(F.relu(1.0 + sign * x).mean() for x in logits) / len(logits)


def feature_matching_loss(
    real_outputs: list[list[torch.Tensor]], fake_outputs: list[list[torch.Tensor]]
) -> torch.Tensor:
    """L1 (mean) between D's intermediate features of fake and detached real, summed over
    the features of every scale, divided by the number of scales (unweighted)."""
    total = 0.0
    for real_scale, fake_scale in zip(real_outputs, fake_outputs, strict=True):
        for real, fake in zip(real_scale[:-1], fake_scale[:-1], strict=True):
            total = total + F.l1_loss(fake, real.detach())
    return total / len(real_outputs)


def vgg_loss(vgg: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """sum_i w_i * L1(vgg_i(fake), vgg_i(real).detach()), w = 1/32, 1/16, 1/8, 1/4, 1."""
    total = 0.0
    for weight, fake_map, real_map in zip(VGG_LAYER_WEIGHTS, vgg(fake), vgg(real), strict=True):
        total = total + weight * F.l1_loss(fake_map, real_map.detach())
    return total


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """-0.5 * sum(1 + logvar - mu^2 - exp(logvar)), summed over every example given."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """mean + eps * exp(0.5 logvar), with the standard-normal ``eps`` given."""
    return eps.mul(torch.exp(0.5 * logvar)) + mu


def _split(outputs: list[list[torch.Tensor]], start: int, stop: int) -> list[list[torch.Tensor]]:
    return [[f[start:stop] for f in scale] for scale in outputs]


class ReferenceGauGAN:
    """The reference's training iteration on our PyTorch networks: one generator step (hinge,
    feature matching, VGG and KL terms; D judges fake and real in one batch), then one
    discriminator step on a fresh fake from the updated generator.

    ``gpus``: how many GPUs the reference would split the batch over (sync batch norm):
    every term is averaged over them, KL being a sum over each GPU's examples. ``noise``
    arguments are the reparameterisation's standard-normal draws [B, latent] (VAE only).
    After each ``train_step``, ``gradients`` holds the step's gradients by parameter name
    (``generator/...``, ``encoder/...``, ``discriminator/...``) unless ``keep_gradients``
    is off (the benchmarks time the step without those copies).
    """

    def __init__(
        self,
        generator: SPADEGenerator,
        discriminator: MultiscaleDiscriminator,
        encoder: ConvEncoder | None = None,
        vgg: VGG19Features | None = None,
        feature_matching_weight: float = 10.0,
        vgg_weight: float = 10.0,
        kl_weight: float = 0.05,
        gpus: int = 1,
        keep_gradients: bool = True,
    ) -> None:
        if generator.use_vae != (encoder is not None):
            raise ValueError("a VAE generator needs the encoder, and only it does")
        if vgg_weight and vgg is None:
            raise ValueError("vgg_weight > 0 needs the VGG19 features")
        self.generator, self.discriminator, self.encoder = generator, discriminator, encoder
        self.vgg = vgg
        self.feature_matching_weight = feature_matching_weight
        self.vgg_weight = vgg_weight
        self.kl_weight = kl_weight
        self.gpus = gpus
        self.keep_gradients = keep_gradients
        self.gradients: dict[str, torch.Tensor] = {}

    def networks(self) -> dict[str, nn.Module]:
        nets = {"generator": self.generator, "discriminator": self.discriminator}
        if self.encoder is not None:
            nets["encoder"] = self.encoder
        return nets

    def generator_parameters(self) -> list[nn.Parameter]:
        params = list(self.generator.parameters())
        if self.encoder is not None:
            params += list(self.encoder.parameters())
        return params

    def _per_gpu(self, batch: int, loss) -> torch.Tensor:
        """``loss(start, stop)`` on each GPU's rows, averaged over the GPUs."""
        if batch % self.gpus:
            raise ValueError(f"batch {batch} does not split over {self.gpus} GPUs")
        share = batch // self.gpus
        return sum(loss(r * share, (r + 1) * share) for r in range(self.gpus)) / self.gpus

    def generate(
        self, semantic: torch.Tensor, image: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(fake, KL term before its weight, or None without VAE)."""
        if self.encoder is None:
            return self.generator(semantic), None
        mu, logvar = self.encoder(image)
        z = reparameterize(mu, logvar, noise)
        kl = self._per_gpu(mu.size(0), lambda a, b: kl_divergence(mu[a:b], logvar[a:b]))
        return self.generator(semantic, z), kl

    def discriminate(self, semantic: torch.Tensor, fake: torch.Tensor, real: torch.Tensor):
        """D on [fake; real] (each with the semantic channels first); split back."""
        both = torch.cat([torch.cat([semantic, fake], 1), torch.cat([semantic, real], 1)], 0)
        outputs = self.discriminator(both)
        half = fake.size(0)
        return _split(outputs, 0, half), _split(outputs, half, 2 * half)

    def generator_losses(
        self, semantic: torch.Tensor, image: torch.Tensor, noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        fake, kl = self.generate(semantic, image, noise)
        fake_out, real_out = self.discriminate(semantic, fake, image)
        batch = image.size(0)
        terms = {"g_gan": self._per_gpu(
            batch, lambda a, b: hinge_generator_loss(_split(fake_out, a, b)))}
        if self.feature_matching_weight:
            terms["g_feature_matching"] = self.feature_matching_weight * self._per_gpu(
                batch, lambda a, b: feature_matching_loss(_split(real_out, a, b),
                                                          _split(fake_out, a, b)))
        if self.vgg_weight:
            terms["g_vgg"] = self.vgg_weight * self._per_gpu(
                batch, lambda a, b: vgg_loss(self.vgg, fake[a:b], image[a:b]))
        if kl is not None:
            terms["g_kl"] = self.kl_weight * kl
        return terms

    def discriminator_losses(
        self, semantic: torch.Tensor, image: torch.Tensor, noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake, _ = self.generate(semantic, image, noise)
        fake_out, real_out = self.discriminate(semantic, fake.detach(), image)
        batch = image.size(0)
        return {
            "d_real": self._per_gpu(
                batch, lambda a, b: hinge_discriminator_loss(_split(real_out, a, b), True)),
            "d_fake": self._per_gpu(
                batch, lambda a, b: hinge_discriminator_loss(_split(fake_out, a, b), False)),
        }

    def _keep_gradients(self, roles: tuple[str, ...]) -> None:
        if not self.keep_gradients:
            return
        for role in roles:
            for name, param in self.networks().get(role, nn.Module()).named_parameters():
                if param.grad is not None:
                    self.gradients[f"{role}/{name}"] = param.grad.detach().clone()

    def train_step(
        self,
        semantic: torch.Tensor,
        image: torch.Tensor,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        noise: tuple[torch.Tensor, torch.Tensor] | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> dict[str, float]:
        """One G step then one D step (networks in training mode); the losses as floats.

        ``autocast_dtype`` (``torch.bfloat16``, ...): the forward passes run under
        ``torch.autocast`` (mixed precision), the backward passes outside it.
        """
        for net in self.networks().values():
            net.train()
        noise_g, noise_d = noise if noise is not None else (None, None)

        def forward_precision():
            if autocast_dtype is None:
                return contextlib.nullcontext()
            return torch.autocast(semantic.device.type, dtype=autocast_dtype)

        self.gradients = {}
        g_optimizer.zero_grad()
        with forward_precision():
            g_terms = self.generator_losses(semantic, image, noise_g)
            g_terms["g_total"] = sum(g_terms.values())
        g_terms["g_total"].backward()
        self._keep_gradients(("generator", "encoder"))
        g_optimizer.step()

        d_optimizer.zero_grad()
        with forward_precision():
            d_terms = self.discriminator_losses(semantic, image, noise_d)
            d_terms["d_total"] = d_terms["d_real"] + d_terms["d_fake"]
        d_terms["d_total"].backward()
        self._keep_gradients(("discriminator",))
        d_optimizer.step()
        return {k: float(v.detach()) for k, v in {**g_terms, **d_terms}.items()}
