"""Reference networks with weights: randomised for a spade_tf config, saved, counted."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from spade_tf.testing.torch_reference.discriminator import MultiscaleDiscriminator
from spade_tf.testing.torch_reference.encoder import ConvEncoder
from spade_tf.testing.torch_reference.generator import SPADEGenerator
from spade_tf.testing.torch_reference.layers import ClassAffine
from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch_beside_tensorflow()  # Triton kept out: see spade_tf.torch_import
nn = torch.nn
F = torch.nn.functional


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
        elif isinstance(m, ClassAffine):  # CLADE: a scale around 1, a shift per class
            m.weight.uniform_(0.5, 1.5, generator=g)
            m.bias.normal_(0.0, 0.5, generator=g)
    for weight, u, v in _spectral_norms(module):
        w_mat = weight.reshape(weight.size(0), -1)  # dim 0 is the output axis here
        # Not run to convergence on purpose: a converter that recomputes sigma instead
        # of using the stored u, v then fails parity visibly.
        u.copy_(F.normalize(torch.randn(u.shape, generator=g), dim=0, eps=1e-12))
        for _ in range(power_iterations):
            v.copy_(F.normalize(w_mat.t() @ u, dim=0, eps=1e-12))
            u.copy_(F.normalize(w_mat @ v, dim=0, eps=1e-12))
    return module.eval()


@torch.no_grad()
def calibrate_batch_norm_(network: nn.Module, *inputs: torch.Tensor) -> nn.Module:
    """Give every batch norm the running statistics of one training call on ``inputs``, as
    a trained network's are of its data: random (or 0 and 1) statistics normalize nothing,
    activations grow block after block and a generator's image is +-1 almost everywhere,
    which hides differences. Returns the network in eval mode."""
    for norm in network.modules():
        if isinstance(norm, nn.BatchNorm2d):
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: this one batch's statistics
    network.train()(*inputs)
    return network.eval()


# -- networks for a spade_tf config, randomised (parity tests, benchmarks) ---------------


def torch_generator(config, seed: int = 0, sn_api: str = "old",
                    add_dist: bool = False) -> SPADEGenerator:
    """The reference generator for ``config`` (a ``spade_tf.config.Config``), randomised:
    SPADE's, or the CLADE fork's for ``model.norm_mode: clade`` (``add_dist``: its
    CLADE-ICPE variant, which spade_tf does not build)."""
    model = config.model
    network = SPADEGenerator(
        model.semantic_channels, crop_size=model.crop_size, aspect_ratio=model.aspect_ratio,
        num_upsampling_layers=model.num_upsampling_layers, use_vae=model.use_vae,
        base_filters=model.base_filters, latent_dim=model.latent_dim, sn_api=sn_api,
        norm_mode=model.norm_mode, use_instance_edges=model.use_instance_edges,
        add_dist=add_dist,
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
