import numpy as np
import pytest
import tensorflow as tf

from spade_tf import model_dir as model_dir_module
from spade_tf.config import Config, ModelConfig
from spade_tf.model_dir import (
    ModelDir,
    ModelDirError,
    checkpoint_steps,
    load_model_dir,
    network_file_problem,
    save_model_dir,
)
from spade_tf.models import build_encoder, build_generator

TINY = ModelConfig(num_classes=3, crop_size=64, base_filters=4, spade_hidden_filters=8,
                   use_vae=True, latent_dim=8, encoder_filters=4, encoder_input_size=128)


def test_round_trip_keeps_config_and_outputs(tmp_path):
    config = Config(model=TINY)
    generator, encoder = build_generator(TINY), build_encoder(TINY)
    save_model_dir(tmp_path / "model", ModelDir(config, generator, encoder=encoder))
    loaded = load_model_dir(tmp_path / "model")
    assert loaded.config == config and loaded.discriminator is None
    inputs = {"semantic": tf.one_hot(tf.zeros((1, 64, 64), tf.int32), 3),
              "latent": tf.random.normal((1, 8))}
    np.testing.assert_array_equal(loaded.generator(inputs).numpy(), generator(inputs).numpy())
    image = tf.random.normal((1, 64, 64, 3))
    np.testing.assert_array_equal(loaded.encoder(image)["mean"].numpy(),
                                  encoder(image)["mean"].numpy())


def test_failure_inside_leaves_nothing_and_keeps_the_old_folder(tmp_path, monkeypatch):
    target = tmp_path / "model"
    model = ModelDir(Config(model=TINY), generator=None)  # the writer below is a stand-in
    failure: list[Exception] = []

    def write(folder, model):
        (folder / "config.yaml").write_text("new")
        (folder / "half.keras").write_text("partial")
        if failure:
            raise failure[0]

    monkeypatch.setattr(model_dir_module, "write_model_dir", write)
    failure.append(RuntimeError("disk full"))
    with pytest.raises(RuntimeError):
        save_model_dir(target, model)
    assert list(tmp_path.iterdir()) == []

    target.mkdir()
    (target / "config.yaml").write_text("old")
    with pytest.raises(ModelDirError, match="already exists and is not empty"):
        save_model_dir(target, model)
    with pytest.raises(RuntimeError):
        save_model_dir(target, model, overwrite=True)
    assert (target / "config.yaml").read_text() == "old"
    failure.clear()
    save_model_dir(target, model, overwrite=True)
    assert (target / "config.yaml").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_empty_folder_is_written_into_and_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(model_dir_module, "write_model_dir",
                        lambda folder, model: (folder / "config.yaml").write_text("new"))
    model = ModelDir(Config(model=TINY), generator=None)
    (tmp_path / "empty").mkdir()  # e.g. made by the user beforehand: nothing to lose
    save_model_dir(tmp_path / "empty", model)
    assert (tmp_path / "empty" / "config.yaml").read_text() == "new"
    (tmp_path / "file").write_text("")
    with pytest.raises(ModelDirError, match="exists and is not a folder"):
        save_model_dir(tmp_path / "file", model, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file"]


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelDirError, match="is not a spade-tf model folder"):
        load_model_dir(tmp_path)


def test_weights_from_a_training_checkpoint(tmp_path):
    config = Config(model=TINY)
    generator, encoder = build_generator(TINY), build_encoder(TINY)
    folder = save_model_dir(tmp_path / "model", ModelDir(config, generator, encoder=encoder))
    # As training writes them: generator and encoder (and more) in checkpoints/ckpt-<step>.
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(generator=generator, encoder=encoder), str(folder / "checkpoints"),
        max_to_keep=3)
    kernels = [v for v in generator.trainable_variables if "kernel" in v.path]
    first = kernels[0].numpy()
    manager.save(checkpoint_number=4)
    kernels[0].assign(first + 1.0)
    manager.save(checkpoint_number=8)
    assert checkpoint_steps(folder) == [4, 8]
    by_step = {which: load_model_dir(folder, ("generator",), checkpoint=which).generator
               for which in ("latest", 4, "4")}
    loaded_kernel = lambda network: [v for v in network.trainable_variables  # noqa: E731
                                     if "kernel" in v.path][0].numpy()
    np.testing.assert_array_equal(loaded_kernel(by_step["latest"]), first + 1.0)
    np.testing.assert_array_equal(loaded_kernel(by_step[4]), first)
    np.testing.assert_array_equal(loaded_kernel(by_step["4"]), first)
    np.testing.assert_array_equal(loaded_kernel(load_model_dir(folder).generator), first)
    with pytest.raises(ModelDirError, match="keeps no checkpoint of step 5: the kept steps "
                                            "are 4, 8"):
        load_model_dir(folder, checkpoint=5)
    with pytest.raises(ModelDirError, match="expected 'latest' or a step number"):
        load_model_dir(folder, checkpoint="best")
    with pytest.raises(ModelDirError, match="has no training checkpoints"):
        load_model_dir(save_model_dir(tmp_path / "other", ModelDir(config, generator)),
                       checkpoint="latest")


def test_a_model_folder_carries_its_class_table(tmp_path):
    model = ModelConfig(**{**TINY.__dict__, "classes": "synthetic", "num_classes": 8})
    folder = save_model_dir(tmp_path / "model", ModelDir(Config(model=model),
                                                         build_generator(model)))
    text = (folder / "config.yaml").read_text()
    assert "classes:\n  source:" in text and "name: person" in text
    table = load_model_dir(folder).config.classes()
    assert table.names[-1] == "person" and table.colors[6] == (210, 40, 40)


PLAIN = ModelConfig(num_classes=3, crop_size=32, base_filters=4, spade_hidden_filters=8)


def _damage(path, how: str) -> None:
    whole = path.read_bytes()
    if how == "truncated":
        path.write_bytes(whole[:len(whole) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "not a zip":
        path.write_text("generator weights, honest")
    elif how == "flipped":  # one byte inside the stored weights: the zip's checksum fails
        data = bytearray(whole)
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.unlink()


def test_a_damaged_network_file_is_named_for_what_it_is(tmp_path):
    generator = build_generator(PLAIN)
    folder = save_model_dir(tmp_path / "model", ModelDir(Config(model=PLAIN), generator))
    path = folder / "generator.keras"
    whole = path.read_bytes()
    assert network_file_problem(path) is None
    expected = {"truncated": "truncated: not a complete zip archive", "empty": "empty",
                "not a zip": "not a .keras file: not a zip archive",
                "flipped": "damaged: model.weights.h5 inside it fails its checksum",
                "missing": "missing"}
    for how, problem in expected.items():
        _damage(path, how)
        assert network_file_problem(path) == problem, how
        path.write_bytes(whole)
    # No checkpoints (a converted folder): convert again. Keras's own words ("File not
    # found" for a file that is there) are not passed on.
    for how in ("truncated", "empty", "not a zip"):
        _damage(path, how)
        with pytest.raises(ModelDirError) as caught:
            load_model_dir(folder)
        message = str(caught.value)
        assert message.startswith(f"{path} is damaged or incomplete ({expected[how]}); "
                                  "write it again: convert it again (spade-convert-torch "
                                  "--overwrite)"), message
        assert "File not found" not in message
        path.write_bytes(whole)


def test_a_checkpoint_needs_no_network_file(tmp_path):
    generator = build_generator(PLAIN)
    folder = save_model_dir(tmp_path / "model", ModelDir(Config(model=PLAIN), generator))
    tf.train.CheckpointManager(tf.train.Checkpoint(generator=generator),
                               str(folder / "checkpoints"), max_to_keep=3).save(7)
    semantic = {"semantic": tf.one_hot(tf.random.uniform((1, 32, 32), 0, 3, tf.int32), 3)}
    expected = generator(semantic).numpy()
    path = folder / "generator.keras"
    for how in ("truncated", "missing"):
        _damage(path, how)
        with pytest.raises(ModelDirError) as caught:
            load_model_dir(folder)
        problem = "missing" if how == "missing" else "truncated: not a complete zip archive"
        assert str(caught.value) == (
            f"{path} is damaged or incomplete ({problem}); write it again: run the same "
            "spade-train command (it rewrites it from the last checkpoint, step 7), or use "
            "that checkpoint directly with --checkpoint latest (spade-export, "
            "spade-synthesize).")
        # Built from config.yaml, weighted from the checkpoint: the file is not read.
        loaded = load_model_dir(folder, checkpoint="latest")
        assert loaded.discriminator is None and loaded.encoder is None
        np.testing.assert_array_equal(loaded.generator(semantic).numpy(), expected)
