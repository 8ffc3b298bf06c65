"""``spade-eval generate`` mistakes: one readable line, exit 2, and no --out folder."""

import json
import shutil

import pytest
from support.models import save_random_model
from support.processes import assert_one_line_error, run_command
from support.synthetic_data import make_synthetic_records

from spade_cli.evaluate import main
from spade_tf.config import DataConfig, ModelConfig
from tfrecords_tools import synthetic

SIZE = 32
DATA = DataConfig(preprocess="none", load_size=SIZE)


def _model(path, num_classes: int = synthetic.NUM_CLASSES):
    model = ModelConfig(num_classes=num_classes, crop_size=SIZE, base_filters=4,
                        spade_hidden_filters=8)
    return save_random_model(path, model, seed=5, data=DATA)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_cli")
    scenes = synthetic.write_dataset(root / "scenes", 2, size=SIZE, seed=4)
    return make_synthetic_records(scenes, root / "records", num_shards=1)


def test_a_truncated_generator_is_named_and_no_out_folder_is_made(records, tmp_path):
    model_dir = _model(tmp_path / "model")
    whole = (model_dir / "generator.keras").read_bytes()
    (model_dir / "generator.keras").write_bytes(whole[:len(whole) // 3])
    out = tmp_path / "eval"
    result = run_command("spade-eval", "generate", "--model-dir", model_dir, "--data", records,
                         "--out", out)
    line = assert_one_line_error(result, "spade-eval generate", "write it again")
    assert line.startswith(f"spade-eval generate: error: {model_dir / 'generator.keras'} is "
                           "damaged or incomplete"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no --out, no staging


def test_label_ids_beyond_the_classes_read_as_a_sentence(records, tmp_path):
    # A dataset whose manifest claims fewer classes than its maps hold: the ids are only
    # found while reading, by the pipeline's in-graph check.
    data = tmp_path / "records"
    shutil.copytree(records, data)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["num_classes"] = 2
    (data / "manifest.json").write_text(json.dumps(manifest))
    model_dir = _model(tmp_path / "model", num_classes=2)
    result = run_command("spade-eval", "generate", "--model-dir", model_dir, "--data", data,
                         "--out", tmp_path / "eval")
    line = assert_one_line_error(result, "spade-eval generate", f"reading {data} failed: ",
                                 "label ids must be in 0..1; found id")
    for internals in ("{{", "[[", "[Op:", "assertion failed", "] ["):
        assert internals not in line, line
    assert not (tmp_path / "eval").exists()


def test_a_bad_out_is_refused_before_the_model_is_read(tmp_path, capsys):
    out = tmp_path / "eval"
    (out / "generated").mkdir(parents=True)
    (out / "generated" / "keep.png").write_bytes(b"mine")
    missing = tmp_path / "no_model"
    assert main(["generate", "--model-dir", str(missing), "--data", str(tmp_path),
                 "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"spade-eval generate: error: {out} already exists and "
                                       "is not empty: choose another folder or allow "
                                       "overwriting (--overwrite).\n")
    as_file = tmp_path / "eval.txt"
    as_file.write_text("mine")
    assert main(["generate", "--model-dir", str(missing), "--data", str(tmp_path),
                 "--out", str(as_file)]) == 2
    assert capsys.readouterr().err == (f"spade-eval generate: error: {as_file} exists and is "
                                       "not a folder.\n")
    assert (out / "generated" / "keep.png").read_bytes() == b"mine"
    assert as_file.read_text() == "mine"


def test_a_corrupt_shard_is_named_without_tensorflow_internals(records, tmp_path):
    data = tmp_path / "records"
    shutil.copytree(records, data)
    shard = next(data.glob("*.tfrecord"))
    damaged = bytearray(shard.read_bytes())
    damaged[200] ^= 0xFF  # inside the first record; the file keeps its size
    shard.write_bytes(bytes(damaged))
    result = run_command("spade-eval", "generate", "--model-dir", _model(tmp_path / "model"),
                         "--data", data, "--out", tmp_path / "eval")
    line = assert_one_line_error(result, "spade-eval generate")
    assert line == (f"spade-eval generate: error: shard {shard} is corrupt after 0 good "
                    "records (corrupted record at byte 12); convert the dataset again or "
                    "remove the shard and its manifest entry."), line
    assert not (tmp_path / "eval").exists()
