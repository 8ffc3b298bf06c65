"""``spade-synthesize`` reads a grey label map saved as RGB as its ids (issue 24, item 6):
one note, the same image as from the single-channel map; colour maps stay refused, named."""

import numpy as np
import pytest
from PIL import Image
from support.models import save_random_model
from support.processes import assert_one_line_error, run_commands

from spade_tf.config import ModelConfig

MODEL = ModelConfig(num_classes=4, use_instance_edges=True, crop_size=32, base_filters=4,
                    spade_hidden_filters=8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("grey") / "model", MODEL, seed=5)


def test_grey_rgb_maps_synthesize_like_single_channel_ones(model_dir, tmp_path):
    rng = np.random.default_rng(3)
    labels = np.kron(rng.integers(0, 4, (4, 4)), np.ones((8, 8))).astype(np.uint8)
    instances = np.kron(rng.integers(0, 9, (4, 4)), np.ones((8, 8))).astype(np.uint8)
    maps = {}
    for name, ids in (("label", labels), ("instance", instances)):
        maps[name] = tmp_path / f"{name}.png"
        Image.fromarray(ids).save(maps[name])
        maps[f"{name}_rgb"] = tmp_path / f"{name}_rgb.png"
        Image.fromarray(ids).convert("RGB").save(maps[f"{name}_rgb"])
    colour = np.stack([instances, instances, 255 - instances], -1)
    maps["instance_colour"] = tmp_path / "instance_colour.png"
    Image.fromarray(colour).save(maps["instance_colour"])

    def synthesize(label: str, instance: str, out: str) -> tuple:
        return ("spade-synthesize", "--model-dir", model_dir, "--labels", maps[label],
                "--instances", maps[instance], "--out", tmp_path / out)

    single, grey, refused = run_commands(synthesize("label", "instance", "single.png"),
                                         synthesize("label_rgb", "instance_rgb", "grey.png"),
                                         synthesize("label", "instance_colour", "no.png"))
    assert single.returncode == 0 and grey.returncode == 0, grey.stderr
    assert "note: " not in single.stderr
    notes = [line for line in grey.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [  # one note for both maps
        f"note: the label map {maps['label_rgb']} is an RGB image whose colour channels are "
        "all equal (a grey map saved as colour): its ids are read from one channel, here and "
        "in every such map."], grey.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "grey.png")),
                                  np.asarray(Image.open(tmp_path / "single.png")))

    assert_one_line_error(refused, "spade-synthesize",
                          f"the instance map {maps['instance_colour']} is an RGB image; "
                          "expected one channel of ids", "a colour rendering of the classes")
    assert not (tmp_path / "no.png").exists()
