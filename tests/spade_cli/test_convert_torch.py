"""``spade-convert-torch`` refuses a bad --out before reading any checkpoint."""

import pytest
from support import import_torch
from support.processes import assert_one_line_error, run_command
from support.reference_checkpoints import tiny_config, torch_generator

from spade_cli.convert_torch import main

torch = import_torch()

from spade_tf.testing import torch_reference as reference  # noqa: E402


@pytest.fixture
def inputs(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_config().to_yaml())
    generator = tmp_path / "latest_net_G.pth"
    reference.save_state_dict(torch_generator(tiny_config()), str(generator))
    return config, generator


def test_an_existing_out_is_refused_before_any_tensor_is_converted(inputs, tmp_path, capsys):
    config, generator = inputs
    out = tmp_path / "models" / "tiny"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    result = run_command("spade-convert-torch", "--config", config, "--generator", generator,
                         "--out", out)
    assert_one_line_error(result, "spade-convert-torch",
                          f"{out} already exists and is not empty: choose another folder or "
                          "allow overwriting (--overwrite).")
    assert "tensors" not in result.stderr  # nothing was converted first
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # no staging left

    # A file as --out, and a bad --out with an unreadable checkpoint: --out is named first.
    target = tmp_path / "model.keras"
    target.write_text("not a folder")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"garbage")
    assert main(["--config", str(config), "--generator", str(broken), "--out",
                 str(target)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (f"spade-convert-torch: error: {target} exists and "
                                            "is not a folder.")
    assert target.read_text() == "not a folder"
