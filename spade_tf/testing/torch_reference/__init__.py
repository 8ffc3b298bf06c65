"""A small PyTorch SPADE/GauGAN: the ground truth of the parity tests and benchmarks.

Written from the reference's published checkpoint layout (parameter names and shapes) and
its documented behaviour (docs/design.md); no code is taken from the reference. Module
attribute names are chosen so that ``state_dict()`` keys, shapes and order match the
reference's checkpoints: the converter under test only ever sees those keys.

One concept a module; this package gives all of their public names
(``from spade_tf.testing import torch_reference as reference``):

- ``layers``: spectral norm (both torch APIs), ``SPADE``, ``CLADE`` (with its
  ``ClassAffine``), ``SPADEResBlock`` (either norm);
- ``generator``: ``SPADEGenerator``; ``discriminator``: ``NLayerDiscriminator``,
  ``MultiscaleDiscriminator``; ``encoder``: ``ConvEncoder`` (the VAE style encoder);
- ``weights``: ``randomize_`` (sharp parity subjects), ``torch_generator`` /
  ``torch_discriminator`` / ``torch_encoder`` for a ``spade_tf.config.Config``,
  ``save_state_dict``, ``count_trainable``;
- ``inputs``: ``semantic_one_hot`` (one-hot classes, don't-care, instance edges);
- ``losses``: hinge, feature-matching, VGG19 and KL terms, ``VGG19Features``
  (torchvision's layout);
- ``training``: ``ReferenceGauGAN``, one training iteration (G step then D step) for the
  training-parity tests and the training benchmark.

torch is imported through :func:`spade_tf.torch_import.import_torch_beside_tensorflow`
(Triton kept out of a process that runs TensorFlow).
"""

from spade_tf.testing.torch_reference.discriminator import (
    MultiscaleDiscriminator,
    NLayerDiscriminator,
)
from spade_tf.testing.torch_reference.encoder import ConvEncoder
from spade_tf.testing.torch_reference.generator import UPSAMPLING_LAYERS, SPADEGenerator
from spade_tf.testing.torch_reference.inputs import instance_edges, semantic_one_hot
from spade_tf.testing.torch_reference.layers import (
    CLADE,
    NORM_MODES,
    NORM_TYPES,
    SN_APIS,
    SPADE,
    ClassAffine,
    SPADEResBlock,
    leaky_relu,
    spectral_norm,
)
from spade_tf.testing.torch_reference.losses import (
    VGG19_FEATURE_ENDS,
    VGG19_LAYOUT,
    VGG_LAYER_WEIGHTS,
    VGG19Features,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    kl_divergence,
    reparameterize,
    vgg_loss,
)
from spade_tf.testing.torch_reference.training import ReferenceGauGAN
from spade_tf.testing.torch_reference.weights import (
    count_trainable,
    randomize_,
    save_state_dict,
    torch_discriminator,
    torch_encoder,
    torch_generator,
)

__all__ = [
    "CLADE",
    "NORM_MODES",
    "NORM_TYPES",
    "SN_APIS",
    "SPADE",
    "UPSAMPLING_LAYERS",
    "VGG19_FEATURE_ENDS",
    "VGG19_LAYOUT",
    "VGG_LAYER_WEIGHTS",
    "ClassAffine",
    "ConvEncoder",
    "MultiscaleDiscriminator",
    "NLayerDiscriminator",
    "ReferenceGauGAN",
    "SPADEGenerator",
    "SPADEResBlock",
    "VGG19Features",
    "count_trainable",
    "feature_matching_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "instance_edges",
    "kl_divergence",
    "leaky_relu",
    "randomize_",
    "reparameterize",
    "save_state_dict",
    "semantic_one_hot",
    "spectral_norm",
    "torch_discriminator",
    "torch_encoder",
    "torch_generator",
    "vgg_loss",
]
