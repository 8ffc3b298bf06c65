"""The reference's training iteration in PyTorch: one G step then one D step (``ReferenceGauGAN``).

Each loss is computed on one GPU's share of the batch and the GPUs' values are averaged,
which is what the reference's data parallelism does with them; with synchronized batch
norm (one process: plain BatchNorm2d on the whole batch) only the KL term, a sum over
each GPU's examples, depends on how many GPUs share the batch.
"""

from __future__ import annotations

import contextlib

from spade_tf.testing.torch_reference.discriminator import MultiscaleDiscriminator
from spade_tf.testing.torch_reference.encoder import ConvEncoder
from spade_tf.testing.torch_reference.generator import SPADEGenerator
from spade_tf.testing.torch_reference.losses import (
    VGG19Features,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    kl_divergence,
    reparameterize,
    vgg_loss,
)
from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch_beside_tensorflow()  # Triton kept out: see spade_tf.torch_import
nn = torch.nn


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
