"""``import spade_tf`` is enough: the public API and every serializable class."""

import numpy as np
from support.processes import run_python

from spade_tf.config import ModelConfig
from spade_tf.models import build_discriminator, build_generator


def test_import_spade_tf_alone_registers_the_networks_and_gives_the_api(tmp_path):
    model = ModelConfig(num_classes=3, crop_size=32, base_filters=2, spade_hidden_filters=4,
                        disc_filters=4, disc_layers=2)
    build_discriminator(model).save(tmp_path / "discriminator.keras")
    generator = build_generator(model)
    generator.save(tmp_path / "generator.keras")
    semantic = np.eye(3, dtype=np.float32)[np.random.default_rng(0).integers(0, 3, (1, 32, 32))]
    np.save(tmp_path / "semantic.npy", semantic)
    np.save(tmp_path / "expected.npy", generator({"semantic": semantic}).numpy())
    result = run_python(f"""
        import json
        import keras
        import numpy as np
        import spade_tf
        folder = {str(tmp_path)!r}
        discriminator = keras.saving.load_model(folder + "/discriminator.keras")
        generator = keras.saving.load_model(folder + "/generator.keras")
        image = generator({{"semantic": np.load(folder + "/semantic.npy")}}).numpy()
        from spade_tf.training import GauGAN
        print(json.dumps({{
            "discriminator": type(discriminator).__name__,
            "difference": float(np.abs(image - np.load(folder + "/expected.npy")).max()),
            "api": [name for name in spade_tf.__all__ if not hasattr(spade_tf, name)],
            "gaugan": spade_tf.GauGAN is GauGAN,
        }}))
    """)
    assert result == {"discriminator": "MultiScaleDiscriminator", "difference": 0.0, "api": [],
                      "gaugan": True}
