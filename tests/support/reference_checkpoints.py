"""The converter tests' tiny config and its randomised PyTorch networks (needs torch).

The network builders live in ``spade_tf.testing.torch_reference.weights`` (the benchmarks
use them too); they are re-exported here for the tests.
"""

from spade_tf.config import Config, ModelConfig
from spade_tf.testing.torch_reference.weights import (  # noqa: F401 (re-exported for the tests)
    calibrate_batch_norm_,
    torch_discriminator,
    torch_encoder,
    torch_generator,
)

# 5 classes + don't-care + instance edges = 7 semantic channels; hidden width 128 as in
# the reference (fixed there), few filters so everything runs in a second on a CPU.
TINY_MODEL = {"num_classes": 5, "use_dontcare_label": True, "use_instance_edges": True,
              "crop_size": 64, "base_filters": 4, "latent_dim": 16, "disc_filters": 8,
              "encoder_filters": 4}


def tiny_config(**changes) -> Config:
    return Config(model=ModelConfig(**{**TINY_MODEL, **changes}))

