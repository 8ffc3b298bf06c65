"""Bad checkpoints and mismatched configs: one clear error, nothing left behind."""

import collections
import pickle

import numpy as np
import pytest
from support import import_torch
from support.reference_checkpoints import tiny_config, torch_discriminator, torch_generator

from spade_cli.convert_torch import main
from spade_tf.convert import ConversionError, convert_reference_checkpoints, load_state_dict

torch = import_torch()


def _convert_fails(config, tmp_path, words, **paths):
    out = tmp_path / "out" / "model"
    with pytest.raises(ConversionError) as error:
        convert_reference_checkpoints(config, out, config_name="configs/tiny.yaml", **paths)
    message = str(error.value)
    assert words in message, message
    assert "\n" not in message
    # No output and no staging folder left over.
    assert not out.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    return message


@pytest.fixture
def generator_file(save):
    return save(torch_generator(tiny_config()), "latest_net_G.pth")


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    _convert_fails(tiny_config(), tmp_path, "not a readable PyTorch file", generator=path)


def test_truncated_file(generator_file, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(generator_file.read_bytes()[: generator_file.stat().st_size // 2])
    _convert_fails(tiny_config(), tmp_path, "corrupt, truncated", generator=truncated)


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    _convert_fails(tiny_config(), tmp_path, "not a readable PyTorch file", generator=text)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    _convert_fails(tiny_config(), tmp_path, "holds a Tensor, not a state_dict", generator=tensor)
    mixed = tmp_path / "mixed.pth"
    torch.save({"epoch": 3, "weight": torch.zeros(1)}, mixed)
    _convert_fails(tiny_config(), tmp_path, "entry 'epoch' holds a int", generator=mixed)
    _convert_fails(tiny_config(), tmp_path, "does not exist", generator=tmp_path / "nope.pth")


def test_arbitrary_pickles_are_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(collections.Counter("abc")))
    _convert_fails(tiny_config(), tmp_path, "not a readable PyTorch file", generator=path)


def test_class_count_mismatch_is_explained(generator_file, tmp_path):
    message = _convert_fails(tiny_config(num_classes=35), tmp_path,
                             "the generator checkpoint expects 7 semantic channels; "
                             "configs/tiny.yaml gives 37", generator=generator_file)
    assert "num_classes=35" in message


def test_vae_and_upsampling_mismatches_are_explained(save, generator_file, tmp_path):
    _convert_fails(tiny_config(use_vae=True), tmp_path, "trained without the VAE",
                   generator=generator_file)
    most = save(torch_generator(tiny_config(num_upsampling_layers="most", crop_size=128)),
                "most.pth")
    _convert_fails(tiny_config(crop_size=128), tmp_path, "has the up_4 block", generator=most)
    _convert_fails(tiny_config(base_filters=8), tmp_path, "base_filters=4",
                   generator=generator_file)


def test_vae_start_size_mismatch_is_explained(save, tmp_path):
    vae = save(torch_generator(tiny_config(use_vae=True)), "vae.pth")
    _convert_fails(tiny_config(use_vae=True, crop_size=128), tmp_path,
                   "start the generator from 4x4x64 = 1024", generator=vae)


def test_wrong_network_for_the_role(save, tmp_path):
    discriminator = save(torch_discriminator(tiny_config()), "D.pth")
    _convert_fails(tiny_config(), tmp_path, "is a discriminator checkpoint, but it was given "
                   "as the generator", generator=discriminator)


def test_discriminator_mismatch_is_explained(save, generator_file, tmp_path):
    discriminator = save(torch_discriminator(tiny_config()), "D.pth")
    _convert_fails(tiny_config(disc_layers=3), tmp_path, "it has 4 conv layers per scale",
                   generator=generator_file, discriminator=discriminator)


@pytest.mark.parametrize("edit, words", [
    ("drop", "missing key 'up_1.conv_1.weight_u' (expected shape (16,))"),
    ("add", "unexpected key 'extra.weight' (shape (2,))"),
    ("reshape", "key 'conv_img.bias' has shape (4,) in the checkpoint, the model expects (3,)"),
])
def test_missing_unexpected_and_misshaped_keys(edit, words, tmp_path):
    state = torch_generator(tiny_config()).state_dict()
    if edit == "drop":
        del state["up_1.conv_1.weight_u"]
    elif edit == "add":
        state["extra.weight"] = torch.zeros(2)
    else:
        state["conv_img.bias"] = torch.zeros(4)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    _convert_fails(tiny_config(), tmp_path, words, generator=path)


def test_key_normalization_for_data_parallel_and_new_spectral_norm(save):
    network = torch_generator(tiny_config(), sn_api="new")
    state = load_state_dict(save(network, "G.pth", data_parallel=True))
    assert "head_0.conv_0.weight_orig" in state and "head_0.conv_0.weight_u" in state
    assert not any(key.startswith("module.") or "parametrizations" in key for key in state)


def test_cli_converts_and_reports_errors(generator_file, tmp_path, capsys, configs_dir):
    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_config().to_yaml())
    out = tmp_path / "model"
    assert main(["--config", str(config), "--generator", str(generator_file),
                 "--out", str(out)]) == 0
    assert (out / "generator.keras").is_file() and (out / "config.yaml").is_file()
    assert "generator: " in capsys.readouterr().err

    # The output exists now: refused without --overwrite, replaced with it.
    assert main(["--config", str(config), "--generator", str(generator_file),
                 "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["--config", str(config), "--generator", str(generator_file),
                 "--out", str(out), "--overwrite"]) == 0

    assert main(["--config", str(configs_dir / "ade20k.yaml"), "--generator",
                 str(generator_file), "--out", str(tmp_path / "ade")]) == 2
    err = capsys.readouterr().err
    assert "the generator checkpoint expects 7 semantic channels" in err
    assert "ade20k.yaml gives 151" in err
    assert not (tmp_path / "ade").exists()
