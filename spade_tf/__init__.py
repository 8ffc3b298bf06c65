"""spade-tf: SPADE / GauGAN semantic image synthesis for TensorFlow 2 and Keras 3.

The public API, always there whatever was imported before::

    from spade_tf import SPADE, SPADEResBlock                 # layers (spade_tf.layers)
    from spade_tf import SPADEGenerator, build_generator      # networks (spade_tf.models)
    from spade_tf import GauGAN, train                        # training (spade_tf.training)
    from spade_tf import load_config, export_model, load_model_dir, load_for_inference

``import spade_tf`` itself is light: it imports neither TensorFlow nor Keras (seconds), so
the console scripts (``spade_cli``) answer ``--help`` at once. Each public name is imported
from its module the first time it is used (:pep:`562`, the table ``_PUBLIC`` below).

Keras knows the package's serializable classes once their modules are imported:
``import spade_tf.models`` registers the networks and the layers they are made of
(``spade_tf.layers`` the layers alone), so ``keras.saving.load_model("generator.keras")``
works after it, as it does after using any public name from those modules;
:func:`load_model_dir` and :func:`load_for_inference` import them themselves. Where Keras
is imported already (``import keras; import spade_tf``), importing the package registers
them at once: Keras's backend is loaded then anyway. The layers and networks run on every
Keras backend and import no TensorFlow under JAX or PyTorch; training, the TFRecord input,
export and serving are TensorFlow's (``spade_tf.backend``, docs/backends.md).

The modules: ``config`` (YAML -> frozen settings), ``layers``, ``models``, ``training``,
``data`` (TFRecord schema and tf.data input), ``export`` and ``signatures`` (the served
SavedModel), ``inference_rules`` (uint8 and style-latent rules), ``inference_loader`` (the
inference copy of a model folder), ``label_maps`` (reading maps of ids), ``model_dir``
(the saved-model folder), ``layout`` (names on disk), ``atomic`` (files written whole),
``progress``, ``precision``, ``convert`` (reference checkpoints), ``evaluation``,
``testing`` (PyTorch ground truth). The console scripts live in the ``spade_cli`` package.
"""

import importlib
import sys

__version__ = "0.1.0"

# Public name -> the module that defines it (renaming a module is one line here).
_PUBLIC = {
    **dict.fromkeys(("Config", "ConfigError", "load_config"), "spade_tf.config"),
    "SpadeError": "spade_tf.errors",
    "export_model": "spade_tf.export",
    **dict.fromkeys(("fold_for_inference", "load_for_inference"), "spade_tf.inference_loader"),
    **dict.fromkeys(("SPADE", "CLADE", "AveragePoolExcludingPadding", "LegacyNearestResize",
                     "SemanticInput", "SPADEResBlock", "SpectralNormalization"),
                    "spade_tf.layers"),
    **dict.fromkeys(("load_model_dir", "save_model_dir"), "spade_tf.model_dir"),
    **dict.fromkeys(("MultiScaleDiscriminator", "SPADEGenerator", "VAEEncoder",
                     "build_discriminator", "build_encoder", "build_generator",
                     "build_semantic_input"), "spade_tf.models"),
    **dict.fromkeys(("GauGAN", "train"), "spade_tf.training"),
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    """A public name, imported from its module on first use (then kept here)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if "keras" in sys.modules:  # costs nothing more: register the classes for load_model
    importlib.import_module("spade_tf.models")
