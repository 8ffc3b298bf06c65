"""A CLADE model (``--set model.norm_mode=clade``) through the commands a user runs:
spade-train, the same command resumed for another epoch, spade-export, a served prediction."""

import numpy as np
import yaml
from support import ROOT
from support.processes import run_command
from support.synthetic_data import make_synthetic_records

from serving.client import SpadeClient
from serving.server import SpadeServer
from spade_tf import inference_rules as inference
from spade_tf import signatures as sig
from spade_tf.inference_loader import load_for_inference
from spade_tf.layers import CLADE
from spade_tf.model_dir import load_model_dir
from spade_tf.models import build_semantic_input
from tfrecords_tools import synthetic

SIZE = 32


def test_a_clade_model_trains_resumes_exports_and_serves(tmp_path):
    scenes = synthetic.write_dataset(tmp_path / "scenes", 8, size=SIZE, seed=3)
    records = make_synthetic_records(scenes, tmp_path / "records", num_shards=1)
    model_dir = tmp_path / "run"
    # The demo's model (8 classes, instance edges) at 32x32; 8 scenes in batches of 4.
    command = ("--config", ROOT / "configs" / "demo.yaml", "--data", records,
               "--model-dir", model_dir, "--set", "model.norm_mode=clade",
               "--set", f"model.crop_size={SIZE}", "--set", f"data.load_size={SIZE}",
               "--set", "train.batch_size=4", "--set", "train.sample_every_epochs=0",
               "--verbose", "0")
    first = run_command("spade-train", *command, "--set", "train.epochs=1", timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_command("spade-train", *command, "--set", "train.epochs=2", timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "spade-train: resuming at step 2 (epoch 2 of 2)" in resumed.stderr, resumed.stderr
    assert yaml.safe_load((model_dir / "config.yaml").read_text())["model"]["norm_mode"] == \
        "clade"

    exports = tmp_path / "exports"
    exported = run_command("spade-export", "--model-dir", model_dir, "--export-base", exports)
    assert exported.returncode == 0, exported.stderr[-3000:]

    loaded = load_model_dir(model_dir)
    generator = loaded.generator
    norm = generator.get_layer("up_3").norm_0
    assert isinstance(norm, CLADE) and norm.use_instance_edges
    # Trained: the tables moved away from their start (beta starts at zero).
    assert np.abs(generator.get_layer("head_0").norm_0.beta.numpy()).max() > 0

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, (2, SIZE, SIZE)).astype(np.int32)
    instances = rng.integers(0, 4, (2, SIZE // 8, SIZE // 8)).repeat(8, 1).repeat(8, 2)
    instances = instances.astype(np.int32)
    server = SpadeServer(exports / "spade", "spade", port=0, poll_seconds=0)
    server.start()
    try:
        with SpadeClient(server.address, "spade", timeout=60) as client:
            served = client.predict({sig.LABEL_IDS: labels, sig.INSTANCE_IDS: instances})
    finally:
        server.stop(grace=1.0).wait(10)
    image = served.outputs[sig.IMAGE]
    # What the export holds: the model folder's generator folded for inference.
    served_generator = load_for_inference(model_dir).generator
    semantic = build_semantic_input(loaded.config.model)(labels, instances)
    expected = inference.to_uint8(served_generator({"semantic": semantic},
                                                   training=False)).numpy()
    assert image.shape == (2, SIZE, SIZE, 3) and image.std() > 0
    assert np.abs(image.astype(int) - expected).max() <= 1
