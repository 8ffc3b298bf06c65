"""``spade-export`` mistakes: one line, exit 2, and nothing written under --export-base."""

import json

import pytest
from support.models import save_random_model
from support.processes import assert_one_line_error, run_command

from spade_cli.export import main
from spade_tf import layout
from spade_tf.config import ModelConfig
from spade_tf.export import ExportError, export_model

PLAIN = ModelConfig(num_classes=3, crop_size=32, base_filters=4, spade_hidden_filters=8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("export_cli") / "model", PLAIN, seed=3)


def _tree(folder) -> list[str]:
    """Every path under ``folder`` (hidden staging folders included), relative."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) \
        if folder.exists() else []


def test_a_truncated_generator_is_named_and_nothing_is_exported(model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_bytes((model_dir / "config.yaml").read_bytes())
    whole = (model_dir / "generator.keras").read_bytes()
    (broken / "generator.keras").write_bytes(whole[:len(whole) // 2])
    exports = tmp_path / "exports"
    result = run_command("spade-export", "--model-dir", broken, "--export-base", exports)
    line = assert_one_line_error(result, "spade-export", "write it again")
    # What is wrong, in words: not Keras's "File not found" for a file that is there.
    assert line == (f"spade-export: error: {broken / 'generator.keras'} is damaged or "
                    "incomplete (truncated: not a complete zip archive); write it again: "
                    "convert it again (spade-convert-torch --overwrite), or train into a new "
                    "model folder with spade-train."), line
    assert not exports.exists()


def test_non_positive_limits_and_versions_are_refused_before_loading(model_dir, tmp_path,
                                                                       capsys):
    exports = tmp_path / "exports"
    # 0 used to mean "the default" (8): now it is refused like any other non-positive limit.
    result = run_command("spade-export", "--model-dir", model_dir, "--export-base", exports,
                         "--max-batch-size", "-3", "--max-pixels", "-1")
    assert_one_line_error(result, "spade-export", "--max-batch-size -3:",
                          "must be a positive integer")
    # The same in-process (no start-up to pay): 0, and a version below 1.
    assert main(["--model-dir", str(model_dir), "--export-base", str(exports),
                 "--max-pixels", "0"]) == 2
    assert capsys.readouterr().err.startswith("spade-export: error: --max-pixels 0: the "
                                              "largest style image")
    assert main(["--model-dir", str(model_dir), "--export-base", str(exports),
                 "--version", "-1"]) == 2
    assert capsys.readouterr().err == ("spade-export: error: version -1: TF Serving versions "
                                       "are positive integers (omit --version for the next "
                                       "free one).\n")
    assert not exports.exists()

    # The Python API refuses them too, before looking at the model folder at all.
    missing = tmp_path / "no_model_here"
    for options, words in [({"max_batch_size": 0}, "--max-batch-size 0:"),
                           ({"max_pixels": -5}, "--max-pixels -5:"),
                           ({"max_batch_size": 2.5}, "--max-batch-size 2.5:"),
                           ({"version": 0}, "version 0:")]:
        with pytest.raises(ExportError, match=words):
            export_model(missing, exports, **options)
    assert not exports.exists()


def test_an_existing_version_is_kept_and_limits_reach_the_metadata(model_dir, tmp_path):
    exports = tmp_path / "exports"
    result = run_command("spade-export", "--model-dir", model_dir, "--export-base", exports,
                         "--max-batch-size", "2", "--max-pixels", "100")
    assert result.returncode == 0, result.stderr
    version = exports / "spade" / "1"
    assert f"exported {version}" in result.stdout
    assert f"spade-serve --model-base-path {exports / 'spade'}" in result.stdout
    metadata = json.loads((version / layout.SPADE_METADATA_FILE).read_text())
    assert (metadata["max_batch_size"], metadata["max_pixels"]) == (2, 100)
    before = {path: path.stat().st_mtime_ns for path in version.rglob("*")}

    result = run_command("spade-export", "--model-dir", model_dir, "--export-base", exports,
                         "--version", "1")
    assert_one_line_error(result, "spade-export", f"{version} exists already",
                          "omit --version")
    assert {path: path.stat().st_mtime_ns for path in version.rglob("*")} == before
    assert [p.name for p in (exports / "spade").iterdir()] == ["1"]  # no staging left


def test_unusable_targets_and_model_folders(model_dir, tmp_path, capsys):
    base_file = tmp_path / "exports.txt"
    base_file.write_text("mine")
    result = run_command("spade-export", "--model-dir", model_dir, "--export-base", base_file)
    assert_one_line_error(result, "spade-export", f"{base_file} exists and is not a folder")
    assert base_file.read_text() == "mine"

    exports = tmp_path / "exports"
    assert main(["--model-dir", str(model_dir), "--export-base", str(exports),
                 "--model-name", "a/b"]) == 2
    assert capsys.readouterr().err.startswith("spade-export: error: model name 'a/b' must be "
                                              "a plain folder name")
    assert main(["--model-dir", str(tmp_path), "--export-base", str(exports)]) == 2
    assert capsys.readouterr().err.startswith(f"spade-export: error: {tmp_path} is not a "
                                              "spade-tf model folder")
    assert _tree(exports) == []

    # In-process (no start-up): a file in place of the model's folder, and a model name
    # that would climb out of the export base.
    (exports / "spade").parent.mkdir()
    (exports / "spade").write_text("mine")
    with pytest.raises(ExportError, match="exports/spade exists and is not a folder"):
        export_model(model_dir, exports, "spade")
    with pytest.raises(ExportError, match="must be a plain folder name"):
        export_model(model_dir, exports, "..")
    assert _tree(exports) == ["spade"] and (exports / "spade").read_text() == "mine"


def test_a_failed_export_removes_the_folders_it_created(model_dir, tmp_path, monkeypatch):
    import spade_tf.export as export_module

    def fail(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the SavedModel is written

    monkeypatch.setattr(export_module.tf.saved_model, "save", fail)
    exports = tmp_path / "new" / "exports"
    with pytest.raises(KeyboardInterrupt):
        export_model(model_dir, exports, "spade", warmup=False)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    (kept / "spade" / "1").mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        export_model(model_dir, kept, "spade", warmup=False)
    assert _tree(kept) == ["spade", "spade/1"]
