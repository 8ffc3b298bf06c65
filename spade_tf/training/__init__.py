"""Training GauGAN: the trainer model, its losses, the VGG features, the fit loop.

- :mod:`spade_tf.training.gaugan`: ``GauGAN``, the ``keras.Model`` whose ``train_step``
  does one generator and one discriminator step per batch;
- :mod:`spade_tf.training.losses`: the GAN, feature-matching, VGG and KL terms;
- :mod:`spade_tf.training.vgg`: VGG19 features from a local weights file;
- :mod:`spade_tf.training.optimizers`: Adam with PyTorch's arithmetic (the reference's);
- :mod:`spade_tf.training.ema`: the exponential moving average of the generator's weights
  (``train.ema_decay``) and its batch-norm re-estimation;
- :mod:`spade_tf.training.train`: ``train(config, data, model_dir)``: the run (what
  ``spade-train`` runs), with its parts in :mod:`~spade_tf.training.strategy` (the
  ``tf.distribute`` strategy), :mod:`~spade_tf.training.callbacks` and
  :mod:`~spade_tf.training.progress` (checkpoints, schedule, samples, stop requests, the
  bar) and :mod:`~spade_tf.training.run_folder` (the model folder's rules: what may be
  trained into, resume, networks); :mod:`~spade_tf.training.recovery` rewrites a finished
  run's damaged network files.
"""

from spade_tf.backend import require_tensorflow
from spade_tf.training.ema import GeneratorAverage
from spade_tf.training.errors import LossBecameNaN, TrainingError
from spade_tf.training.gaugan import GauGAN, build_trainer, global_step
from spade_tf.training.optimizers import TorchAdam, make_optimizer
from spade_tf.training.strategy import choose_strategy
from spade_tf.training.train import train
from spade_tf.training.vgg import VGGWeightsError, load_vgg_features, random_vgg_features

# GauGAN's step is tf.distribute and tf.GradientTape code: a clear error on JAX or torch.
require_tensorflow("GauGAN training (spade_tf.training)")

__all__ = [
    "GauGAN",
    "GeneratorAverage",
    "LossBecameNaN",
    "TorchAdam",
    "TrainingError",
    "VGGWeightsError",
    "build_trainer",
    "choose_strategy",
    "global_step",
    "load_vgg_features",
    "make_optimizer",
    "random_vgg_features",
    "train",
]
