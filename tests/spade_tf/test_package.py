"""``import spade_tf``: light (no TensorFlow), the public API always there (each name loaded
on first use), and ``spade_tf.models`` registering every class a ``.keras`` file needs."""

import subprocess
import sys

import numpy as np
import pytest
from support import ROOT
from support.processes import command_env, run_python

import spade_tf
from spade_tf.config import ModelConfig
from spade_tf.models import build_discriminator, build_generator


def test_import_spade_tf_imports_no_tensorflow():
    code = ("import json, sys; import spade_tf; "
            "print(json.dumps(sorted(name for name in ('tensorflow', 'keras') "
            "if name in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=command_env(), cwd=ROOT, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_after_the_commands_the_api_is_there_and_models_register_the_networks(tmp_path):
    model = ModelConfig(num_classes=3, crop_size=32, base_filters=2, spade_hidden_filters=4,
                        disc_filters=4, disc_layers=2)
    build_discriminator(model).save(tmp_path / "discriminator.keras")
    generator = build_generator(model)
    generator.save(tmp_path / "generator.keras")
    semantic = np.eye(3, dtype=np.float32)[np.random.default_rng(0).integers(0, 3, (1, 32, 32))]
    np.save(tmp_path / "semantic.npy", semantic)
    np.save(tmp_path / "expected.npy", generator({"semantic": semantic}).numpy())
    result = run_python(f"""
        import json, sys
        import spade_cli.app  # a console script's start: the package's light modules first
        import spade_tf
        light = "tensorflow" not in sys.modules
        import keras
        import numpy as np
        import spade_tf.models  # what the docs say registers the networks and their layers
        folder = {str(tmp_path)!r}
        discriminator = keras.saving.load_model(folder + "/discriminator.keras")
        generator = keras.saving.load_model(folder + "/generator.keras")
        image = generator({{"semantic": np.load(folder + "/semantic.npy")}}).numpy()
        from spade_tf.training import GauGAN
        print(json.dumps({{
            "light": light,
            "discriminator": type(discriminator).__name__,
            "difference": float(np.abs(image - np.load(folder + "/expected.npy")).max()),
            "gaugan": spade_tf.GauGAN is GauGAN,
            "api": [name for name in spade_tf.__all__ if not hasattr(spade_tf, name)],
        }}))
    """)
    assert result == {"light": True, "discriminator": "MultiScaleDiscriminator",
                      "difference": 0.0, "gaugan": True, "api": []}
    # Keras first, then the package (a notebook's order): registered without another import.
    assert run_python(f"""
        import json
        import keras
        import spade_tf
        network = keras.saving.load_model({str(tmp_path / "generator.keras")!r})
        print(json.dumps(type(network).__name__))
    """) == "SPADEGenerator"


def test_every_public_name_resolves_from_its_module():
    import importlib

    for name in spade_tf.__all__:
        value = getattr(spade_tf, name)
        assert value is getattr(importlib.import_module(spade_tf._PUBLIC[name]), name), name
    assert set(spade_tf.__all__) <= set(dir(spade_tf))
    namespace: dict = {}
    exec("from spade_tf import *", namespace)
    assert set(spade_tf.__all__) <= set(namespace)


def test_unknown_names_are_attribute_errors_and_submodules_still_import():
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        spade_tf.NoSuchThing  # noqa: B018
    from spade_tf import layout

    assert layout.CONFIG_FILE == "config.yaml"
