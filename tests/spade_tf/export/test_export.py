"""The export is a self-contained SavedModel with the documented signatures."""

import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.exports import KINDS

from spade_cli.export import main
from spade_tf import layout
from spade_tf import signatures as sig
from spade_tf.export import ExportError, export_model
from spade_tf.models import build_semantic_input

VAE = KINDS["spade"].model  # with warm-up requests
VAE_SIGNATURES = sorted([sig.DEFAULT_SIGNATURE, sig.SEEDED_SIGNATURE, sig.STYLE_SIGNATURE,
                         sig.ENCODE_SIGNATURE, sig.PNG_SIGNATURE, sig.PNG_SEEDED_SIGNATURE,
                         sig.PNG_STYLE_SIGNATURE, sig.MODEL_INFO_SIGNATURE])
PLAIN = KINDS["plain_dontcare"].model


@pytest.fixture(scope="module")
def exported(exports):
    """The session's exports (tests/support/exports.py): read, never written into."""
    vae, plain = exports("spade"), exports("plain_dontcare")
    return {"vae": vae.version_dir, "plain": plain.version_dir, "plain_model": plain.model_dir}


def test_layout_version_and_metadata(exported):
    assert exported["vae"].name == "1" and exported["vae"].parent.name == "spade"
    assert (exported["vae"] / "saved_model.pb").is_file()
    assert (exported["vae"] / layout.WARMUP_FILE).is_file()
    metadata = json.loads((exported["vae"] / layout.SPADE_METADATA_FILE).read_text())
    assert metadata["signatures"] == VAE_SIGNATURES
    assert layout.next_version(exported["vae"].parent) == 2
    assert not [p for p in exported["vae"].parent.iterdir() if p.name.startswith(".")]


def test_warmup_requests_are_prediction_logs_for_every_signature(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    names = []
    for record in tf.data.TFRecordDataset(str(exported["vae"] / layout.WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        assert log.predict_log.request.model_spec.name == "spade"
        names.append(log.predict_log.request.model_spec.signature_name)
    assert sorted(names) == VAE_SIGNATURES


def test_loads_in_a_fresh_process_where_spade_tf_cannot_be_imported(serving_loaders):
    assert serving_loaders["spade_importable"] is False
    vae = serving_loaders["exports"]["spade"]["tf2"]  # tf.saved_model.load
    image = vae[sig.DEFAULT_SIGNATURE]["image"]
    assert image["dtype"] == "uint8" and image["shape"] == [2, 64, 64, 3]
    assert vae[sig.SEEDED_SIGNATURE]["image"]["sum"] > 0


def _shapes(outputs: dict) -> list:
    return sorted([key, value["shape"]] for key, value in outputs.items())


def test_runs_under_the_graph_loader_that_tf_serving_uses(serving_loaders):
    """TF Serving restores variables by the SavedModel's graph, not tf.saved_model.load."""
    loaded = serving_loaders["exports"]["spade"]
    result = {name: _shapes(outputs) for name, outputs in loaded["session"].items()}
    assert result[sig.DEFAULT_SIGNATURE] == [["image", [2, 64, 64, 3]]]
    assert result[sig.ENCODE_SIGNATURE] == [["log_variance", [2, 8]], ["mean", [2, 8]]]
    assert result[sig.PNG_STYLE_SIGNATURE] == [["image_png_bytes", [2]]]
    assert result[sig.MODEL_INFO_SIGNATURE] == [["metadata_json", []]]
    assert sorted(result) == VAE_SIGNATURES
    # The same seeded images as tf.saved_model.load gives.
    assert loaded["session"][sig.SEEDED_SIGNATURE] == loaded["tf2"][sig.SEEDED_SIGNATURE]


def test_graph_has_no_python_function_ops(exported):
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString(
        (exported["vae"] / "saved_model.pb").read_bytes())
    ops = {node.op for graph in saved.meta_graphs for node in graph.graph_def.node}
    ops |= {node.op for graph in saved.meta_graphs
            for function in graph.graph_def.library.function for node in function.node_def}
    assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
    assert "Conv2D" in ops


def _tensor_info(kind: str, name: str, dtype: str, shape: str) -> str:
    return f"{kind}['{name}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}"


def test_saved_model_cli_lists_the_documented_signatures(exported, serving_loaders):
    cli = shutil.which("saved_model_cli") or str(
        __import__("pathlib").Path(sys.executable).parent / "saved_model_cli")
    output = subprocess.run([cli, "show", "--dir", str(exported["vae"]), "--all"],
                            capture_output=True, text=True, timeout=120, check=True).stdout
    for name in (sig.DEFAULT_SIGNATURE, sig.SEEDED_SIGNATURE, sig.STYLE_SIGNATURE,
                 sig.ENCODE_SIGNATURE):
        assert f"signature_def['{name}']" in output
    assert _tensor_info("inputs", "label_ids", "DT_INT32", "(-1, -1, -1)") in output
    assert _tensor_info("inputs", "style_image", "DT_UINT8", "(-1, -1, -1, 3)") in output
    assert _tensor_info("outputs", "image", "DT_UINT8", "(-1, 64, 64, 3)") in output
    assert _tensor_info("outputs", "mean", "DT_FLOAT", "(-1, 8)") in output
    # Without instance edges or a VAE (its signature defs, as the graph loader reads them):
    # no instance input anywhere, no seeded signature.
    plain = serving_loaders["exports"]["plain_dontcare"]["inputs"]
    assert sig.SEEDED_SIGNATURE not in plain and sig.DEFAULT_SIGNATURE in plain
    assert not [name for name, inputs in plain.items() if "instance_ids" in inputs], plain


def test_exported_image_equals_the_in_memory_generator(exported):
    model = tf.saved_model.load(str(exported["plain"]))
    labels = np.random.default_rng(1).integers(0, 5, (2, 64, 64)).astype(np.int32)
    labels[:, :8, :8] = 255
    served = model.signatures[sig.DEFAULT_SIGNATURE](label_ids=tf.constant(labels))["image"]
    generator = keras.saving.load_model(exported["plain_model"] / "generator.keras")
    semantic = build_semantic_input(PLAIN)(labels)
    image = generator({"semantic": semantic}, training=False).numpy()
    expected = np.clip(np.round((image + 1) * 127.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(served.numpy(), expected)


@pytest.mark.parametrize("labels, words", [
    (np.full((1, 64, 64), 7, np.int32), "found id] [7]"),
    (np.zeros((1, 32, 64), np.int32), "label_ids must be [batch, 64, 64]"),
    (np.zeros((9, 64, 64), np.int32), "limit of 8 examples"),
])
def test_bad_inputs_fail_inside_the_graph(exported, labels, words):
    model = tf.saved_model.load(str(exported["plain"]))
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        model.signatures[sig.DEFAULT_SIGNATURE](label_ids=tf.constant(labels))
    assert words in str(error.value)


def test_cli_exports_next_version_and_refuses_existing(exported, capsys, tmp_path):
    folder = exported["plain_model"]
    base = tmp_path / "cli_exports"
    assert main(["--model-dir", str(folder), "--export-base", str(base), "--no-warmup"]) == 0
    assert main(["--model-dir", str(folder), "--export-base", str(base), "--no-warmup"]) == 0
    assert sorted(p.name for p in (base / "spade").iterdir()) == ["1", "2"]
    assert main(["--model-dir", str(folder), "--export-base", str(base), "--version",
                 "2"]) == 2
    assert "exists already" in capsys.readouterr().err
    with pytest.raises(ExportError, match="not a spade-tf model folder|positive integers"):
        export_model(folder, base, "spade", version=0)
