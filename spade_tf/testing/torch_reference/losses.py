"""The reference's training losses in PyTorch: hinge, feature matching, VGG19 and KL terms.

Written from the reference's documented losses and optimisation (docs/design.md), with a
VGG19 feature stack in torchvision's layout (``VGG19Features``).
"""

from __future__ import annotations

from spade_tf.torch_import import import_torch_beside_tensorflow

torch = import_torch_beside_tensorflow()  # Triton kept out: see spade_tf.torch_import
nn = torch.nn
F = torch.nn.functional

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
