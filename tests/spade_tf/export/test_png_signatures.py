"""The PNG signatures (light clients) and model_info: same pixels, clear refusals."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from spade_tf import layout
from spade_tf import signatures as sig


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def png_exports(exports):
    """The session's exports (tests/support/exports.py), loaded: a 32x32 VAE model whose
    classes come from a class file (sky, ground 200 180 90, water, road), and a plain one
    with 300 classes."""
    return {name: (export.version_dir, tf.saved_model.load(str(export.version_dir)))
            for name, export in (("vae", exports("vae_32_named")),
                                 ("plain", exports("plain_300")))}


def _maps(seed: int, classes: int, batch: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, classes, (batch, 4, 4)), np.ones((8, 8), np.int64))


def test_png_in_and_out_gives_the_pixels_of_serving_default(png_exports):
    _, model = png_exports["vae"]
    labels = _maps(0, 4)
    pngs = tf.constant([_png(m.astype(np.uint8)) for m in labels])
    seeds = tf.constant([5, 6], tf.int64)
    expected = model.signatures[sig.SEEDED_SIGNATURE](
        label_ids=tf.constant(labels, tf.int32), instance_ids=tf.constant(labels, tf.int32),
        seed=seeds)[sig.IMAGE].numpy()
    out = model.signatures[sig.PNG_SEEDED_SIGNATURE](
        label_png_bytes=pngs, instance_png_bytes=pngs, seed=seeds)[sig.IMAGE_PNG].numpy()
    images = np.stack([np.asarray(Image.open(io.BytesIO(data))) for data in out])
    np.testing.assert_array_equal(images, expected)
    # A style photo as JPEG bytes: the image of synthesize_with_style for that photo.
    photo = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    styled = model.signatures[sig.PNG_STYLE_SIGNATURE](
        label_png_bytes=pngs[:1], instance_png_bytes=pngs[:1],
        style_png_bytes=tf.constant([buffer.getvalue()]))[sig.IMAGE_PNG].numpy()
    direct = model.signatures[sig.STYLE_SIGNATURE](
        label_ids=tf.constant(labels[:1], tf.int32), instance_ids=tf.constant(labels[:1], tf.int32),
        style_image=tf.constant(photo[None]))[sig.IMAGE].numpy()
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(styled[0]))), direct[0])


def test_sixteen_bit_maps_carry_ids_over_255(png_exports):
    _, model = png_exports["plain"]
    labels = _maps(2, 300, batch=1)
    labels[0, :8, :8] = 299
    wide = _png(labels[0].astype(np.uint16))
    out = model.signatures[sig.PNG_SIGNATURE](label_png_bytes=tf.constant([wide]))
    image = np.asarray(Image.open(io.BytesIO(out[sig.IMAGE_PNG].numpy()[0])))
    expected = model.signatures[sig.DEFAULT_SIGNATURE](
        label_ids=tf.constant(labels, tf.int32))[sig.IMAGE].numpy()[0]
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("data, words", [
    (b"GIF89a not a png at all", "label_png_bytes is not a PNG file"),
    (_png(np.zeros((32, 32, 3), np.uint8)), "label_png_bytes is a colour or palette PNG"),
    (_png(np.zeros((16, 32), np.uint8)), "label_png_bytes must be 32x32 (this model"),
    (_png(np.full((32, 32), 9, np.uint8)), "label ids must be in 0..299"),
])
def test_bad_pngs_are_refused_with_the_reason(png_exports, data, words):
    _, model = png_exports["plain"]
    if words.startswith("label ids"):
        data = _png(np.full((32, 32), 300, np.uint16))
        words = "label ids must be in 0..299; found id] [300"
    with pytest.raises(tf.errors.InvalidArgumentError, match=words.replace("[", r"\[")
                       .replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        model.signatures[sig.PNG_SIGNATURE](label_png_bytes=tf.constant([data]))


def test_model_info_carries_size_classes_and_signatures(png_exports):
    path, model = png_exports["vae"]
    text = model.signatures[sig.MODEL_INFO_SIGNATURE](
        request=tf.constant([0], tf.int32))[sig.METADATA_JSON].numpy().decode()
    info = json.loads(text)
    assert info == json.loads((path / layout.SPADE_METADATA_FILE).read_text())
    assert info["image_size"] == [32, 32] and info["use_vae"] is True
    names = [entry["name"] for entry in info["classes"]["classes"]]
    assert names == ["sky", "ground", "water", "road"]
    assert info["classes"]["classes"][1]["color"] == [200, 180, 90]
    assert sig.PNG_STYLE_SIGNATURE in info["signatures"]
    _, plain = png_exports["plain"]
    plain_info = json.loads(plain.signatures[sig.MODEL_INFO_SIGNATURE](
        request=tf.constant([7, 7], tf.int32))[sig.METADATA_JSON].numpy())
    assert plain_info["signatures"] == sorted([sig.DEFAULT_SIGNATURE, sig.PNG_SIGNATURE,
                                               sig.MODEL_INFO_SIGNATURE])
    assert plain_info["classes"]["classes"][299]["name"] == "class 299"


def test_png_signatures_run_under_tf_servings_graph_loader(serving_loaders):
    result = serving_loaders["exports"]["plain_300"]["session"]
    # PNG files' signature, for both maps of the batch.
    assert result[sig.PNG_SIGNATURE]["image_png_bytes"]["head"] == ["89504e470d0a1a0a"] * 2
    info = result[sig.MODEL_INFO_SIGNATURE]["metadata_json"]
    assert [document["image_size"] for document in info["json"]] == [[32, 32]]
