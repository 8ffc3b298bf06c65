"""Image folders: pairing by name, reading label maps, and the errors users see."""

import numpy as np
import pytest
from PIL import Image

from spade_tf.evaluation import EvaluationError
from spade_tf.evaluation.evaluate import evaluate_synthetic
from spade_tf.evaluation.images import list_images, pair_by_stem, read_label_map


def test_pairs_by_stem_and_names_missing_partners(tmp_path, write_pngs):
    image = np.zeros((4, 4, 3), np.uint8)
    write_pngs(tmp_path / "gen", {"a": image, "b": image, "c": image})
    write_pngs(tmp_path / "lab" / "sub", {"a": image[..., 0], "b": image[..., 0],
                                          "z": image[..., 0]})
    (tmp_path / "lab" / ".hidden.png").write_bytes(b"")  # skipped
    generated, labels = list_images(tmp_path / "gen"), list_images(tmp_path / "lab")
    with pytest.raises(EvaluationError) as caught:
        pair_by_stem(generated, labels)
    message = str(caught.value)
    assert "1 generated images have no partner" in message and "c.png" in message
    assert "1 label maps have no partner" in message and "z.png" in message
    pairs = pair_by_stem(generated[:2], labels[:2])
    assert [name for name, _, _ in pairs] == ["a", "b"]


def test_label_maps_8_and_16_bit_but_not_rgb(tmp_path):
    ids = np.array([[0, 300], [65535, 7]], np.uint16)
    Image.fromarray(ids).save(tmp_path / "wide.png")
    np.testing.assert_array_equal(read_label_map(tmp_path / "wide.png"), ids.astype(np.int32))
    Image.fromarray(np.array([[1, 255]], np.uint8)).save(tmp_path / "narrow.png")
    np.testing.assert_array_equal(read_label_map(tmp_path / "narrow.png"), [[1, 255]])
    Image.fromarray(np.array([[[9, 0, 0]]], np.uint8)).save(tmp_path / "colour.png")
    with pytest.raises(EvaluationError, match="is an RGB image; expected one channel"):
        read_label_map(tmp_path / "colour.png")


def test_folder_errors(tmp_path, write_pngs):
    with pytest.raises(EvaluationError, match="does not exist"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="holds no .png/.jpg/.jpeg files"):
        list_images(tmp_path / "empty", "generated")
    write_pngs(tmp_path / "gen", {"a": np.zeros((4, 6, 3), np.uint8)})
    write_pngs(tmp_path / "lab", {"a": np.zeros((4, 4), np.uint8)})
    with pytest.raises(EvaluationError, match=r"a.png is 6x4 but its label map .* is 4x4"):
        evaluate_synthetic(tmp_path / "gen", tmp_path / "lab")
    (tmp_path / "gen" / "a.png").write_bytes(b"not a png")
    with pytest.raises(EvaluationError, match="cannot read the image"):
        evaluate_synthetic(tmp_path / "gen", tmp_path / "lab")
