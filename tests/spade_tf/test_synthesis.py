"""spade_tf.synthesis: label-map files in, images out, in process (model folder, export)."""

import numpy as np
import pytest
from PIL import Image

from spade_tf.config import ModelConfig
from spade_tf.inference_rules import seeded_latent, to_uint8
from spade_tf.map_files import SynthesisError, list_map_files
from spade_tf.model_dir import load_model_dir
from spade_tf.models import build_semantic_input
from spade_tf.synthesis import synthesize_files
from spade_tf.synthesis_backends import ModelFolderBackend, SavedModelBackend

VAE = ModelConfig(num_classes=4, use_instance_edges=True, crop_size=32, base_filters=4,
                  spade_hidden_filters=8, use_vae=True, latent_dim=8, encoder_filters=4,
                  encoder_input_size=128, classes="")


@pytest.fixture(scope="module")
def model(exports):
    export = exports("vae_32")  # VAE
    assert export.model == VAE
    return (export.model_dir, export.version_dir,
            load_model_dir(export.model_dir, ("generator",)).generator)


def _maps(folder, count=3, size=32, seed=0):
    rng = np.random.default_rng(seed)
    (folder / "labels" / "sub").mkdir(parents=True)
    (folder / "instances" / "sub").mkdir(parents=True)
    names = []
    for index in range(count):
        name = f"sub/map{index}" if index == count - 1 else f"map{index}"
        labels = np.kron(rng.integers(0, 4, (size // 8, size // 8)), np.ones((8, 8), np.int64))
        Image.fromarray(labels.astype(np.uint8)).save(folder / "labels" / f"{name}.png")
        Image.fromarray((labels * 3).astype(np.uint16)).save(folder / "instances" / f"{name}.png")
        names.append(name)
    return names


def test_model_folder_and_export_give_the_same_seeded_images(model, tmp_path):
    model_dir, version, generator = model
    names = _maps(tmp_path)
    items = list_map_files(tmp_path / "labels", tmp_path / "instances", uses_instances=True)
    assert [item.name for item in items] == sorted(names)
    folder = synthesize_files(ModelFolderBackend(model_dir), items, tmp_path / "a", seed=7,
                              batch_size=2)
    export = synthesize_files(SavedModelBackend(version), items, tmp_path / "b", seed=7)
    assert folder.count("written") == export.count("written") == 3
    for name in names:
        a = np.asarray(Image.open(tmp_path / "a" / f"{name}.png"))
        b = np.asarray(Image.open(tmp_path / "b" / f"{name}.png"))
        assert a.shape == (32, 32, 3) and np.abs(a.astype(int) - b).max() <= 1
    # By hand, by spade_tf.inference_rules's seeded rule.
    labels = np.asarray(Image.open(tmp_path / "labels" / f"{names[0]}.png")).astype(np.int32)
    instances = np.asarray(Image.open(tmp_path / "instances" / f"{names[0]}.png")).astype(np.int32)
    semantic = build_semantic_input(VAE)(labels[None], instances[None])
    expected = to_uint8(generator({"semantic": semantic, "latent": seeded_latent([7], 8)}))
    image = np.asarray(Image.open(tmp_path / "b" / f"{names[0]}.png"))
    assert np.abs(image.astype(int) - np.asarray(expected)[0]).max() <= 1
    assert np.std(image) > 1  # random weights still draw something


def test_resize_keeps_ids_and_back_restores_the_size(model, tmp_path):
    _, version, _ = model
    backend = SavedModelBackend(version)
    (tmp_path / "labels").mkdir()
    (tmp_path / "instances").mkdir()
    labels = np.zeros((20, 50), np.uint8)
    labels[:, 25:] = 3
    Image.fromarray(labels).save(tmp_path / "labels" / "wide.png")
    Image.fromarray(labels).save(tmp_path / "instances" / "wide.png")
    items = list_map_files(tmp_path / "labels", tmp_path / "instances", True)
    with pytest.raises(SynthesisError, match="is 50x20 but this model makes 32x32 images: "
                                             "add --resize"):
        synthesize_files(backend, items, tmp_path / "out")
    summary = synthesize_files(backend, items, tmp_path / "model", resize="model",
                               keep_arrays=-1, seed=1)
    resized = summary.results[0].labels
    assert resized.shape == (32, 32) and set(np.unique(resized)) == {0, 3}
    np.testing.assert_array_equal(resized[:, :16], 0)  # nearest: the halves stay halves
    np.testing.assert_array_equal(resized[:, 16:], 3)
    assert Image.open(tmp_path / "model" / "wide.png").size == (32, 32)
    synthesize_files(backend, items, tmp_path / "back", resize="back", seed=1)
    assert Image.open(tmp_path / "back" / "wide.png").size == (50, 20)


def test_outputs_are_kept_unless_overwrite_and_never_half_written(model, tmp_path):
    _, version, _ = model
    backend = SavedModelBackend(version)
    _maps(tmp_path, count=2)
    items = list_map_files(tmp_path / "labels", tmp_path / "instances", True)
    out = tmp_path / "out"
    out.mkdir()
    (out / "map0.png").write_bytes(b"mine")
    summary = synthesize_files(backend, items, out, seed=3, keep_arrays=1)
    assert (summary.count("kept"), summary.count("written")) == (1, 1)
    # The arrays kept for a contact sheet are the written images', not the kept files'.
    assert [r.labels is not None for r in summary.results] == [False, True]
    assert (out / "map0.png").read_bytes() == b"mine"
    synthesize_files(backend, items, out, seed=3, overwrite=True)
    assert Image.open(out / "map0.png").size == (32, 32)
    assert not [path for path in out.rglob(".*")]  # no temporary files left


def test_bad_inputs_name_the_file(model, tmp_path):
    _, version, _ = model
    backend = SavedModelBackend(version)
    names = _maps(tmp_path, count=2)
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(tmp_path / "labels" / "map0.png")
    items = list_map_files(tmp_path / "labels", tmp_path / "instances", True)
    with pytest.raises(SynthesisError, match=r"map0.png has label id 9 .*ids are 0..3"):
        synthesize_files(backend, items, tmp_path / "out", seed=1)
    summary = synthesize_files(backend, items, tmp_path / "out", seed=1, skip_bad=True)
    assert [r.status for r in summary.results] == ["skipped", "written"]
    assert summary.results[1].item.name == names[1]
    # A colour map (a grey map saved as RGB, all channels equal, would be read as ids).
    Image.fromarray(np.full((32, 32, 3), (9, 0, 0), np.uint8)).save(
        tmp_path / "labels" / "map0.png")
    with pytest.raises(SynthesisError, match="RGB image; expected one channel of ids"):
        synthesize_files(backend, items, tmp_path / "out2", seed=1)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "labels" / "map0.jpg")
    jpeg = list_map_files(tmp_path / "labels" / "map0.jpg", tmp_path / "instances" / "map0.png",
                          True)
    with pytest.raises(SynthesisError, match="JPEG file: lossy compression"):
        synthesize_files(backend, jpeg, tmp_path / "out3", seed=1)
    assert synthesize_files(backend, jpeg, tmp_path / "out3", seed=1,
                            allow_lossy=True).count("written") == 1
    with pytest.raises(SynthesisError, match="map0.jpg and .*map0.png would both write map0.png"):
        list_map_files(tmp_path / "labels", tmp_path / "instances", True)
    (tmp_path / "labels" / "map0.jpg").unlink()
    (tmp_path / "instances" / "sub" / "map1.png").unlink()
    with pytest.raises(SynthesisError, match="no instance map for sub/map1"):
        list_map_files(tmp_path / "labels", tmp_path / "instances", True)
    with pytest.raises(SynthesisError, match="uses instance maps"):
        list_map_files(tmp_path / "labels", None, True)
    with pytest.raises(SynthesisError, match="is not a spade-export version folder .*holds "
                                             "versions 1"):
        SavedModelBackend(version.parent)


def test_a_model_folder_runs_at_the_precision_asked_for_else_the_configs(model, tmp_path):
    """--precision resolved once: the argument, else the config's export.precision."""
    from spade_tf.precision import network_precision

    model_dir = model[0]
    assert network_precision(ModelFolderBackend(model_dir)._generator) == "float32"
    assert network_precision(
        ModelFolderBackend(model_dir, precision="bfloat16")._generator) == "bfloat16"
