"""The export is a self-contained SavedModel with the documented signatures."""

import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.processes import run_python

from spade_cli.export import main
from spade_tf import signatures as sig
from spade_tf.config import Config, ModelConfig
from spade_tf.export import ExportError, export_model, next_version
from spade_tf.model_dir import ModelDir, save_model_dir
from spade_tf.models import build_encoder, build_generator, build_semantic_input

VAE = ModelConfig(num_classes=4, use_instance_edges=True, crop_size=64, base_filters=4,
                  spade_hidden_filters=8, use_vae=True, latent_dim=8, encoder_filters=4,
                  encoder_input_size=128)
VAE_SIGNATURES = sorted([sig.DEFAULT_SIGNATURE, sig.SEEDED_SIGNATURE, sig.STYLE_SIGNATURE,
                         sig.ENCODE_SIGNATURE, sig.PNG_SIGNATURE, sig.PNG_SEEDED_SIGNATURE,
                         sig.PNG_STYLE_SIGNATURE, sig.MODEL_INFO_SIGNATURE])
PLAIN = ModelConfig(num_classes=5, use_dontcare_label=True, crop_size=64, base_filters=4,
                    spade_hidden_filters=8)


def _model_folder(path, model: ModelConfig):
    keras.utils.set_random_seed(5)
    save_model_dir(path, ModelDir(Config(model=model), build_generator(model),
                                  encoder=build_encoder(model) if model.use_vae else None))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    vae = export_model(_model_folder(root / "vae_model", VAE), root / "exports", "spade")
    plain = export_model(_model_folder(root / "plain_model", PLAIN), root / "exports", "plain")
    return {"vae": vae, "plain": plain, "root": root}


def test_layout_version_and_metadata(exported):
    assert exported["vae"].name == "1" and exported["vae"].parent.name == "spade"
    assert (exported["vae"] / "saved_model.pb").is_file()
    assert (exported["vae"] / sig.WARMUP_FILE).is_file()
    metadata = json.loads((exported["vae"] / sig.SPADE_METADATA_FILE).read_text())
    assert metadata["signatures"] == VAE_SIGNATURES
    assert next_version(exported["vae"].parent) == 2
    assert not [p for p in exported["vae"].parent.iterdir() if p.name.startswith(".")]


def test_warmup_requests_are_prediction_logs_for_every_signature(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    names = []
    for record in tf.data.TFRecordDataset(str(exported["vae"] / sig.WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        assert log.predict_log.request.model_spec.name == "spade"
        names.append(log.predict_log.request.model_spec.signature_name)
    assert sorted(names) == VAE_SIGNATURES


LOAD_WITHOUT_SPADE = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("spade_tf", "tfrecords_tools", "serving"):
            raise ImportError(f"{{name}} must not be needed to load the export")
sys.meta_path.insert(0, Block())
import numpy as np
import tensorflow as tf
model = tf.saved_model.load({path!r})
labels = np.random.default_rng(0).integers(0, 4, (2, 64, 64)).astype(np.int32)
out = model.signatures["serving_default"](label_ids=tf.constant(labels),
                                          instance_ids=tf.constant(labels))
seeded = model.signatures["synthesize_seeded"](label_ids=tf.constant(labels),
                                               instance_ids=tf.constant(labels),
                                               seed=tf.constant([1, 2], tf.int64))
try:
    import spade_tf  # noqa
    importable = True
except ImportError:
    importable = False
print(json.dumps({{"dtype": out["image"].dtype.name, "shape": out["image"].shape.as_list(),
                  "seeded_sum": int(tf.reduce_sum(tf.cast(seeded["image"], tf.int64))),
                  "spade_importable": importable}}))
"""


def test_loads_in_a_fresh_process_where_spade_tf_cannot_be_imported(exported):
    result = run_python(LOAD_WITHOUT_SPADE.format(path=str(exported["vae"])))
    assert result["spade_importable"] is False
    assert result["dtype"] == "uint8" and result["shape"] == [2, 64, 64, 3]
    assert result["seeded_sum"] > 0


SESSION_LOADER = """
import json
import numpy as np
import tensorflow as tf
tf.compat.v1.disable_eager_execution()
results = {{}}
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], {path!r})
    for name, signature in meta.signature_def.items():
        if name.startswith("__"):  # the init op, not a serving signature
            continue
        labels = np.zeros((1, 64, 64), np.int32)
        png = np.array([bytes.fromhex({png!r})], object)
        feeds = {{"label_ids": labels, "instance_ids": labels, "seed": np.array([3], np.int64),
                  "style_image": np.zeros((1, 32, 32, 3), np.uint8), "label_png_bytes": png,
                  "instance_png_bytes": png, "style_png_bytes": png,
                  "request": np.zeros(1, np.int32)}}
        feed = {{info.name: feeds[key] for key, info in signature.inputs.items()}}
        fetch = {{key: info.name for key, info in signature.outputs.items()}}
        out = session.run(fetch, feed)
        results[name] = sorted((key, list(np.shape(value))) for key, value in out.items())
print(json.dumps(results))
"""


def test_runs_under_the_graph_loader_that_tf_serving_uses(exported):
    """TF Serving restores variables by the SavedModel's graph, not tf.saved_model.load."""
    png = tf.io.encode_png(np.zeros((64, 64, 1), np.uint8)).numpy().hex()
    result = run_python(SESSION_LOADER.format(path=str(exported["vae"]), png=png))
    assert result[sig.DEFAULT_SIGNATURE] == [["image", [1, 64, 64, 3]]]
    assert result[sig.ENCODE_SIGNATURE] == [["log_variance", [1, 8]], ["mean", [1, 8]]]
    assert result[sig.PNG_STYLE_SIGNATURE] == [["image_png_bytes", [1]]]
    assert result[sig.MODEL_INFO_SIGNATURE] == [["metadata_json", []]]
    assert sorted(result) == VAE_SIGNATURES


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


def test_saved_model_cli_lists_the_documented_signatures(exported):
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
    plain = subprocess.run([cli, "show", "--dir", str(exported["plain"]), "--all"],
                           capture_output=True, text=True, timeout=120, check=True).stdout
    assert "instance_ids" not in plain and "synthesize_seeded" not in plain


def test_exported_image_equals_the_in_memory_generator(exported):
    model = tf.saved_model.load(str(exported["plain"]))
    labels = np.random.default_rng(1).integers(0, 5, (2, 64, 64)).astype(np.int32)
    labels[:, :8, :8] = 255
    served = model.signatures[sig.DEFAULT_SIGNATURE](label_ids=tf.constant(labels))["image"]
    generator = keras.saving.load_model(exported["root"] / "plain_model" / "generator.keras")
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


def test_cli_exports_next_version_and_refuses_existing(exported, capsys):
    folder = exported["root"] / "plain_model"
    base = exported["root"] / "cli_exports"
    assert main(["--model-dir", str(folder), "--export-base", str(base), "--no-warmup"]) == 0
    assert main(["--model-dir", str(folder), "--export-base", str(base), "--no-warmup"]) == 0
    assert sorted(p.name for p in (base / "spade").iterdir()) == ["1", "2"]
    assert main(["--model-dir", str(folder), "--export-base", str(base), "--version",
                 "2"]) == 2
    assert "exists already" in capsys.readouterr().err
    with pytest.raises(ExportError, match="not a spade-tf model folder|positive integers"):
        export_model(folder, base, "spade", version=0)
