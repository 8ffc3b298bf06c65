"""PyTorch's side of benchmarks/training_step.py: one iteration as the reference's trainer runs it.

``TrainerIteration`` runs the suite's PyTorch networks and losses
(:mod:`spade_tf.testing.torch_reference`) with the lifetimes of the reference's own training
loop (NVlabs/SPADE ``trainers/pix2pix_trainer.py`` and ``models/pix2pix_model.py``, read for
what they hold; no code taken from them), so that the benchmark's peak memory is the
reference trainer's, not that of the parity tests' step (``ReferenceGauGAN.train_step``,
written to compare values, which holds its tensors differently):

- VGG19 up to relu5_1 only: the reference's VGG19 module keeps torchvision's layers up to
  there, and the rest of ``vgg19().features`` (conv5_2 ... conv5_4, 7.1M weights) is freed
  once it is built (``TrainerIteration`` drops them from the ``VGG19Features`` it is given);
- the batch is held as the reference's data loader delivers it (label ids, image, and
  instance ids where used); the one-hot semantic map (and the instance-edge channel) is
  built from the ids inside each of the two forward calls, as the reference's model does
  in ``preprocess_input``, and dies with that call's graph, instead of one map held for
  the whole run;
- generator step: ``zero_grad`` of G's optimizer (the installed torch's default: gradients
  set to None since torch 2.0), G forward, D on fake and real stacked in one batch, the
  losses (hinge, feature matching, VGG19, KL with the VAE), one backward pass of their sum
  and the optimizer step. The backward pass also fills D's ``.grad`` (D's parameters
  require gradients and the loss goes through D), on top of D's gradients of the
  previous iteration, which D's ``zero_grad`` frees only at the start of the D step;
  G's gradients stay alive through the D step until the next G step's ``zero_grad``;
- the trainer keeps the generator step's loss dict and the generated image (its
  ``g_losses`` and ``generated`` attributes) until the next generator step replaces them,
  and the discriminator step's losses until the next D step;
- discriminator step: ``zero_grad`` of D's optimizer, the fresh fake under ``no_grad``,
  detached and then marked ``requires_grad_()`` (the reference does that, so D's backward
  pass also computes the gradient into D's input, first convolution of every scale
  included, and the fake image's ``.grad``), D on fake and real stacked, backward pass of
  the summed hinge terms, the optimizer step.

``ReferenceGauGAN`` differs from that in the ways listed (the whole VGG19 stack; one
semantic map built outside the step and held for the run; no ``requires_grad_`` on the
fresh fake; nothing kept between the steps or iterations); the values are the same: from
the same weights, both give bit-identical losses and weights over three iterations (demo
and ADE20K configs at 64x64).
"""

from __future__ import annotations

import contextlib

import numpy as np

from spade_tf.testing import torch_reference as reference
from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch_beside_tensorflow()  # Triton kept out: see spade_tf.torch_import


def _edge_channel(ids):
    """1.0 where an instance id differs from a 4-neighbour's: [B, 1, H, W] float."""
    edge = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
    across = ids[..., :, 1:] != ids[..., :, :-1]
    down = ids[..., 1:, :] != ids[..., :-1, :]
    edge[..., :, 1:] |= across
    edge[..., :, :-1] |= across
    edge[..., 1:, :] |= down
    edge[..., :-1, :] |= down
    return edge.float()


class TrainerIteration:
    """One training iteration (G step, then D step) with the reference trainer's lifetimes.

    Args:
        config: a ``spade_tf.config.Config`` (classes, don't-care, instance edges, loss
            weights).
        generator, discriminator, encoder, vgg: the suite's PyTorch networks (encoder only
            with ``use_vae``; vgg only with ``vgg_weight > 0``).
        g_optimizer, d_optimizer: ``torch.optim`` optimizers over G (and E) and D.
        data: a numpy batch in ``spade_tf.data``'s layout (``label`` [B, H, W], ``image``
            [B, H, W, 3], ``instance`` where used).
        autocast_dtype: forward passes under ``torch.autocast`` with it (None: float32).
    """

    def __init__(self, config, generator, discriminator, encoder, vgg, g_optimizer,
                 d_optimizer, data: dict, device: str = "cpu", autocast_dtype=None) -> None:
        model, train = config.model, config.train
        if vgg is not None:  # what the reference's VGG19 keeps: up to relu5_1
            vgg.features = vgg.features[:reference.VGG19_FEATURE_ENDS[-1]]
        self.generator, self.discriminator, self.encoder, self.vgg = (
            generator, discriminator, encoder, vgg)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.feature_matching_weight = train.feature_matching_weight
        self.vgg_weight = train.vgg_weight
        self.kl_weight = train.kl_weight
        self.autocast_dtype = autocast_dtype
        self.device_type = torch.device(device).type
        # What the reference's data loader hands over: ids (don't-care already moved to
        # the channel after the classes, as its datasets do), image in [-1, 1], NCHW.
        ids = np.asarray(data["label"]).astype(np.int64)
        if model.use_dontcare_label:
            ids = np.where(ids == model.dontcare_label, model.num_classes, ids)
        self.label = torch.from_numpy(ids[:, None]).to(device)
        self.classes = model.num_classes + int(model.use_dontcare_label)
        self.instance = (torch.from_numpy(np.asarray(data["instance"]).astype(np.int64)[:, None])
                         .to(device) if model.use_instance_edges else None)
        self.image = torch.from_numpy(
            np.ascontiguousarray(data["image"].transpose(0, 3, 1, 2))).to(device)
        # Kept by the trainer between calls, as the reference's trainer keeps them.
        self.g_losses: dict | None = None
        self.generated = None
        self.d_losses: dict | None = None

    # -- what the reference's model does per forward call --------------------------------

    def _semantic(self):
        """The one-hot map (+ instance edges), made anew for each forward call."""
        batch, _, height, width = self.label.shape
        one_hot = torch.zeros(batch, self.classes, height, width, device=self.label.device)
        one_hot.scatter_(1, self.label, 1.0)
        if self.instance is None:
            return one_hot
        return torch.cat([one_hot, _edge_channel(self.instance)], dim=1)

    def _precision(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)

    def _generate(self, semantic, with_kl: bool):
        if self.encoder is None:
            return self.generator(semantic), None
        mean, log_variance = self.encoder(self.image)
        latent = reference.reparameterize(mean, log_variance, torch.randn_like(mean))
        kl = (self.kl_weight * reference.kl_divergence(mean, log_variance)
              if with_kl else None)
        return self.generator(semantic, latent), kl

    def _discriminate(self, semantic, fake):
        """D on [fake; real] in one batch, each with the semantic channels first; split."""
        stacked = torch.cat([torch.cat([semantic, fake], 1),
                             torch.cat([semantic, self.image], 1)], 0)
        outputs = self.discriminator(stacked)
        half = fake.size(0)
        return ([[f[:half] for f in scale] for scale in outputs],
                [[f[half:] for f in scale] for scale in outputs])

    def _generator_forward(self):
        """The generator's losses and image; the locals die on return, as in the reference."""
        semantic = self._semantic()
        fake, kl = self._generate(semantic, with_kl=True)
        fake_out, real_out = self._discriminate(semantic, fake)
        losses = {"g_gan": reference.hinge_generator_loss(fake_out)}
        if self.feature_matching_weight:
            losses["g_feature_matching"] = (self.feature_matching_weight
                                            * reference.feature_matching_loss(real_out,
                                                                              fake_out))
        if self.vgg_weight:
            losses["g_vgg"] = self.vgg_weight * reference.vgg_loss(self.vgg, fake, self.image)
        if kl is not None:
            losses["g_kl"] = kl
        return losses, fake

    def _discriminator_forward(self):
        semantic = self._semantic()
        with torch.no_grad():
            fake, _ = self._generate(semantic, with_kl=False)
            fake = fake.detach()
            fake.requires_grad_()
        fake_out, real_out = self._discriminate(semantic, fake)
        return {"d_fake": reference.hinge_discriminator_loss(fake_out, False),
                "d_real": reference.hinge_discriminator_loss(real_out, True)}

    # -- the trainer's two calls --------------------------------------------------------

    def run_generator_one_step(self) -> None:
        self.g_optimizer.zero_grad()
        with self._precision():
            g_losses, generated = self._generator_forward()
        sum(g_losses.values()).mean().backward()
        self.g_optimizer.step()
        self.g_losses, self.generated = g_losses, generated

    def run_discriminator_one_step(self) -> None:
        self.d_optimizer.zero_grad()
        with self._precision():
            d_losses = self._discriminator_forward()
        sum(d_losses.values()).mean().backward()
        self.d_optimizer.step()
        self.d_losses = d_losses

    def __call__(self) -> dict[str, float]:
        """One iteration; its losses as floats (reading them waits for the work, on a GPU
        too)."""
        for network in (self.generator, self.discriminator, self.encoder):
            if network is not None:
                network.train()
        self.run_generator_one_step()
        self.run_discriminator_one_step()
        g_losses = {**self.g_losses, "g_total": sum(self.g_losses.values())}
        d_losses = {**self.d_losses, "d_total": self.d_losses["d_real"] + self.d_losses["d_fake"]}
        return {name: float(value.detach().float().mean())
                for name, value in {**g_losses, **d_losses}.items()}
