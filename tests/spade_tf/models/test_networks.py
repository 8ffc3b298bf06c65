"""Tiny networks: contract, numerics of the special ops, XLA, and argument errors."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.contract import check_model_contract

from spade_tf.config import ModelConfig
from spade_tf.models import (
    MultiScaleDiscriminator,
    SPADEGenerator,
    VAEEncoder,
    build_generator,
)

TINY = {"semantic_channels": 5, "crop_size": 64, "base_filters": 4,
        "spade_hidden_filters": 8, "latent_dim": 8}


def _semantic(batch=2, height=64, width=64, channels=5):
    ids = np.random.randint(0, channels, (batch, height, width))
    return tf.one_hot(ids, channels)


@pytest.mark.parametrize("use_vae", [False, True])
def test_generator_contract(use_vae, tmp_path):
    generator = SPADEGenerator(use_vae=use_vae, **TINY)
    inputs = {"semantic": _semantic()}
    if use_vae:
        inputs["latent"] = tf.random.normal((2, 8))
    # 1 fc conv or dense (2) + head/middle blocks (3 x 16) + 4 up blocks (4 x 23) + conv_img (2)
    check_model_contract(generator, inputs, tmp_path, expected_trainable_weights=144,
                         expected_output_shapes=[(2, 64, 64, 3)])


@pytest.mark.parametrize("mode, height, width, aspect", [
    ("normal", 64, 64, 1.0), ("more", 64, 128, 2.0), ("most", 128, 128, 1.0)])
def test_generator_upsampling_modes(mode, height, width, aspect):
    keras.utils.set_random_seed(0)  # weights and map (np.random) the same every run
    generator = SPADEGenerator(5, crop_size=width, aspect_ratio=aspect,
                               num_upsampling_layers=mode, base_filters=4,
                               spade_hidden_filters=4)
    inputs = {"semantic": _semantic(1, height, width)}
    # The image is tanh of conv_img's output (a bound like |image| <= 1 cannot fail: any
    # squashing passes it). conv_img is scaled so that a tenth of its outputs lie beyond
    # +-2, where tanh differs from the identity, a clip or a sigmoid. (Scaling by the
    # largest output instead left, for some draws, under 1% of them beyond +-1.)
    conv_img = generator.get_layer("conv_img")
    before_tanh = keras.Model(generator.inputs, conv_img.output)
    spread = np.percentile(np.abs(before_tanh(inputs).numpy()), 90)
    conv_img.kernel.assign(conv_img.kernel * (2.0 / spread))
    pre = before_tanh(inputs).numpy()
    assert np.mean(np.abs(pre) > 1.0) > 0.1 and np.abs(pre).max() > 2.0
    image = generator(inputs).numpy()
    assert image.shape == (1, height, width, 3)
    np.testing.assert_allclose(image, np.tanh(pre), atol=1e-6)
    assert any(layer.name == "up_4" for layer in generator.layers) == (mode == "most")
    upsamplings = [layer for layer in generator.layers
                   if isinstance(layer, keras.layers.UpSampling2D)]
    assert len(upsamplings) == {"normal": 5, "more": 6, "most": 7}[mode]


def test_vae_generator_reshapes_the_dense_output_in_nchw_order():
    generator = SPADEGenerator(use_vae=True, **TINY)
    dense = generator.get_layer("fc")
    latent = tf.random.normal((1, 8))
    start = keras.Model(generator.inputs, generator.get_layer("fc_to_nhwc").output)
    nhwc = start({"semantic": _semantic(1), "latent": latent}).numpy()
    flat = (latent @ dense.kernel + dense.bias).numpy()
    np.testing.assert_allclose(nhwc, flat.reshape(1, 64, 2, 2).transpose(0, 2, 3, 1), atol=1e-6)


def test_generator_xla_matches_eager():
    generator = build_generator(ModelConfig(num_classes=4, crop_size=64, base_filters=4,
                                            spade_hidden_filters=8))
    inputs = {"semantic": _semantic(2, channels=4)}
    eager = generator(inputs, training=False).numpy()
    compiled = tf.function(lambda x: generator(x, training=False), jit_compile=True)
    np.testing.assert_allclose(compiled(inputs).numpy(), eager, atol=1e-5)


def test_discriminator_contract(tmp_path):
    discriminator = MultiScaleDiscriminator(5, num_layers=3, base_filters=4)
    inputs = {"semantic": _semantic(2, 32, 32), "image": tf.random.normal((2, 32, 32, 3))}
    shapes = [(2, 17, 17, 4), (2, 9, 9, 8), (2, 10, 10, 16), (2, 11, 11, 1),
              (2, 9, 9, 4), (2, 5, 5, 8), (2, 6, 6, 16), (2, 7, 7, 1)]
    check_model_contract(discriminator, inputs, tmp_path, expected_trainable_weights=2 * 6,
                         expected_output_shapes=shapes)


def test_encoder_contract(tmp_path):
    encoder = VAEEncoder(base_filters=4, latent_dim=8, input_size=128)
    # Any input size: the encoder resizes to input_size first.
    check_model_contract(encoder, tf.random.normal((2, 48, 80, 3)), tmp_path,
                         expected_trainable_weights=6 + 4,
                         expected_output_shapes=[(2, 8), (2, 8)])


def test_encoder_resize_is_identity_at_its_input_size():
    encoder = VAEEncoder(base_filters=4, latent_dim=8, input_size=128)
    x = tf.random.normal((1, 128, 128, 3))
    resized = keras.Model(encoder.inputs, encoder.get_layer("resize").output)(x)
    np.testing.assert_allclose(resized.numpy(), x.numpy(), atol=1e-6)


def test_a_call_without_training_is_inference():
    encoder = VAEEncoder(base_filters=4, latent_dim=8, input_size=128)
    photo = tf.random.normal((1, 128, 128, 3))
    vectors = [w for w in encoder.weights if w.path.endswith(("/u", "/v"))]
    assert len(vectors) == 12
    stored = [w.numpy().copy() for w in vectors]
    plain = encoder(photo)["mean"].numpy()
    for before, after in zip(stored, vectors, strict=True):
        np.testing.assert_array_equal(before, after.numpy())  # no power iteration ran
    np.testing.assert_array_equal(plain, encoder(photo, training=False)["mean"].numpy())
    encoder(photo, training=True)
    assert any(np.abs(b - a.numpy()).max() > 0 for b, a in zip(stored, vectors, strict=True))


def _ancestors(op: tf.Operation) -> set[str]:
    """Names of the ops ``op`` waits for in its graph (data and control inputs)."""
    seen, pending = set(), [op]
    while pending:
        current = pending.pop()
        for parent in [tensor.op for tensor in current.inputs] + list(current.control_inputs):
            if parent.name not in seen:
                seen.add(parent.name)
                pending.append(parent)
    return seen


def test_each_label_map_branch_waits_for_its_blocks_input_in_a_graph():
    # TensorFlow runs an op once its inputs exist: without the wait every SPADE's cast,
    # resize and shared conv of the label map would run (and be held) at the start.
    generator = SPADEGenerator(**TINY)
    graph = tf.function(lambda semantic: generator({"semantic": semantic}, training=False)
                        ).get_concrete_function(tf.TensorSpec((1, 64, 64, 5))).graph
    layers = ["fc", "head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"]

    def layer_of(op_name: str) -> str | None:
        # "spade_generator_1/up_0_1/norm_0_1/mlp_shared_1/convolution": scopes get suffixes.
        scope = op_name.split("/")[1] if op_name.count("/") > 1 else ""
        return next((name for name in layers if re.fullmatch(rf"{name}(_\d+)?", scope)), None)

    shared_convs = [op for op in graph.get_operations()
                    if op.type == "Conv2D" and "/mlp_shared" in op.name]
    assert len(shared_convs) == 2 * 7 + 4  # norm_0, norm_1 in 7 blocks; norm_s in 4
    for conv in shared_convs:
        block = layer_of(conv.name)
        waits_for = {layer_of(name) for name in _ancestors(conv)}
        assert set(layers[:layers.index(block)]) <= waits_for, (conv.name, waits_for)


@pytest.mark.parametrize("kwargs, words", [
    ({"crop_size": 100}, "crop_size=100 cannot be upsampled to"),
    ({"num_upsampling_layers": "many"}, "num_upsampling_layers='many' is unknown"),
    ({"semantic_channels": 0}, "semantic_channels=0"),
    ({"norm_type": "group"}, "norm_type='group'"),
])
def test_generator_argument_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SPADEGenerator(**{**TINY, **kwargs})


def test_encoder_and_discriminator_argument_errors():
    with pytest.raises(ValueError, match="input_size=100"):
        VAEEncoder(input_size=100)
    with pytest.raises(ValueError, match="num_discriminators=0"):
        MultiScaleDiscriminator(5, num_discriminators=0)


def test_one_discriminator_scale_is_still_a_list_of_scales():
    # Keras hands a one-element output list back unwrapped; the trainer needs scales.
    discriminator = MultiScaleDiscriminator(3, num_discriminators=1, num_layers=2,
                                            base_filters=4)
    inputs = {"semantic": tf.zeros((1, 32, 32, 3)), "image": tf.zeros((1, 32, 32, 3))}
    for outputs in (discriminator(inputs), tf.function(discriminator)(inputs, training=True)):
        assert len(outputs) == 1 and len(outputs[0]) == 3
