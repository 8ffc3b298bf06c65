"""spade-tf: SPADE / GauGAN semantic image synthesis for TensorFlow 2 and Keras 3.

Importing the package registers every serializable class (layers and networks) with
Keras, so ``keras.saving.load_model("generator.keras")`` works after ``import spade_tf``,
and gives the public API::

    from spade_tf import SPADE, SPADEResBlock                 # layers (spade_tf.layers)
    from spade_tf import SPADEGenerator, build_generator      # networks (spade_tf.models)
    from spade_tf import GauGAN, train                        # training (spade_tf.training)
    from spade_tf import load_config, export_model, load_model_dir, load_for_inference

The packages: ``config`` (YAML -> frozen settings), ``layers``, ``models``, ``training``,
``data`` (TFRecord schema and tf.data input), ``export`` and ``signatures`` (the served
SavedModel), ``inference`` (uint8 and style-latent rules), ``label_maps`` (reading maps of
ids), ``model_dir`` (the saved-model folder), ``precision``, ``convert`` (reference
checkpoints), ``evaluation``, ``testing`` (PyTorch ground truth). The console scripts live
in the ``spade_cli`` package.
"""

import sys

__version__ = "0.1.0"

# Registering the Keras classes imports TensorFlow (seconds). The console scripts
# (spade_cli) import spade_tf's light modules to build their parsers, so --help answers at
# once; the library code they run afterwards imports what it needs by name.
if "spade_cli" not in sys.modules:
    from spade_tf.config import Config, ConfigError, load_config
    from spade_tf.errors import SpadeError
    from spade_tf.export import export_model
    from spade_tf.folding import fold_for_inference, load_for_inference
    from spade_tf.layers import (
        SPADE,
        AveragePoolExcludingPadding,
        LegacyNearestResize,
        SemanticInput,
        SPADEResBlock,
        SpectralNormalization,
    )
    from spade_tf.model_dir import load_model_dir, save_model_dir
    from spade_tf.models import (
        MultiScaleDiscriminator,
        SPADEGenerator,
        VAEEncoder,
        build_discriminator,
        build_encoder,
        build_generator,
        build_semantic_input,
    )
    from spade_tf.training import GauGAN, train

    __all__ = [
        "SPADE",
        "AveragePoolExcludingPadding",
        "Config",
        "ConfigError",
        "GauGAN",
        "LegacyNearestResize",
        "MultiScaleDiscriminator",
        "SPADEGenerator",
        "SPADEResBlock",
        "SemanticInput",
        "SpadeError",
        "SpectralNormalization",
        "VAEEncoder",
        "build_discriminator",
        "build_encoder",
        "build_generator",
        "build_semantic_input",
        "export_model",
        "fold_for_inference",
        "load_config",
        "load_for_inference",
        "load_model_dir",
        "save_model_dir",
        "train",
    ]
