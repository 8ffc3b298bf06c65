"""One session-wide set of tiny exports, and one process that loads them as TF Serving does.

Many tests need an export of a small random model, mostly of the same few kinds (a VAE
model with instance edges, a plain one, ...). Each kind here is exported once per test
session, when a test first asks for it (``exports(kind)``, the session fixture
``exports`` of tests/conftest.py), into a folder that every pytest-xdist worker shares: a
file lock lets one worker export while the other waits and then reads the same folder.
Tests only read these folders; to change a base, copy a version into one of the test's
own (``tests/serving/conftest.py``: ``copy_version``). Tests about export_model itself
(errors, versions, rollback) still call it.

``loaded_by_serving_loaders`` runs signatures of several exports in one fresh process under
both loaders a server may use, with this project's packages made unimportable:
``tf.saved_model.load`` and the TF1 session loader TF Serving uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from spade_tf.config import ModelConfig
from support.processes import run_python


@dataclasses.dataclass(frozen=True)
class Kind:
    """A random model (``model`` drawn from ``seed``) exported as ``name``."""

    model: ModelConfig
    seed: int
    name: str = "spade"
    warmup: bool = False
    # The text of a class file written beside the model folder and named by model.classes.
    classes_file: str | None = None


VAE_64 = ModelConfig(num_classes=4, use_instance_edges=True, crop_size=64, base_filters=4,
                     spade_hidden_filters=8, use_vae=True, latent_dim=8, encoder_filters=4,
                     encoder_input_size=128)
VAE_32 = dataclasses.replace(VAE_64, crop_size=32)

KINDS = {
    # Every signature (VAE, instance edges) and warm-up requests: the serving and export
    # tests' main model.
    "spade": Kind(VAE_64, seed=11, warmup=True),
    # Neither: the default signature only (deterministic), and no warm-up file.
    "plain": Kind(ModelConfig(num_classes=5, crop_size=64, base_filters=4,
                              spade_hidden_filters=8), seed=12, name="plain"),
    # A don't-care id (255) on top.
    "plain_dontcare": Kind(ModelConfig(num_classes=5, use_dontcare_label=True, crop_size=64,
                                       base_filters=4, spade_hidden_filters=8),
                           seed=5, name="plain"),
    # The smallest network spade-serve can serve, with its REST port and painter.
    "paint": Kind(ModelConfig(num_classes=3, crop_size=32, base_filters=2,
                              spade_hidden_filters=4, classes=""), seed=1, name="paint"),
    # Instance edges, no VAE: --instance needed, --seed and --style refused.
    "instances_32": Kind(ModelConfig(num_classes=4, use_instance_edges=True, crop_size=32,
                                     base_filters=4, spade_hidden_filters=8), seed=2),
    "vae_32": Kind(dataclasses.replace(VAE_32, classes=""), seed=5),
    # The synthetic scenes' 8 classes, names and colours.
    "vae_32_synthetic": Kind(dataclasses.replace(VAE_32, num_classes=8, classes="synthetic"),
                             seed=9),
    # Class names (and one colour) from a user's class file.
    "vae_32_named": Kind(VAE_32, seed=3, name="vae",
                         classes_file="sky\nground 200 180 90\nwater\nroad\n"),
    # Ids over 255 (16-bit PNG maps).
    "plain_300": Kind(ModelConfig(num_classes=300, crop_size=32, base_filters=4,
                                  spade_hidden_filters=8), seed=3, name="plain"),
    # Every input the painter sends: the demo's classes, a don't-care id, instance edges
    # and a VAE.
    "painter": Kind(dataclasses.replace(VAE_64, num_classes=8, classes="synthetic",
                                        use_dontcare_label=True, dontcare_label=255),
                    seed=21),
    "coco_stuff": Kind(ModelConfig(num_classes=182, classes="coco_stuff",
                                   use_dontcare_label=True, dontcare_label=255, crop_size=32,
                                   base_filters=4, spade_hidden_filters=8),
                       seed=3, name="coco"),
}


@dataclasses.dataclass(frozen=True)
class Export:
    """An exported kind: its model folder and its version folder, read-only."""

    kind: str
    name: str
    model: ModelConfig
    model_dir: Path
    version_dir: Path

    @property
    def base(self) -> Path:
        """``<export_base>/<name>``: what a server polls."""
        return self.version_dir.parent


def shared_root(tmp_path_factory) -> Path:
    """A folder every xdist worker of this run shares (the run's own temporary folder)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def once(folder: Path, make: Callable[[Path], object]) -> dict:
    """``make(folder)``'s JSON result, made by the first worker to get here; the others
    wait for it and read it. A failure is not kept: the next caller tries again."""
    done = folder / "done.json"
    with _locked(folder.parent / f".{folder.name}.lock"):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            done.write_text(json.dumps(make(folder)))
    return json.loads(done.read_text())


def _export(kind: Kind, folder: Path) -> dict:
    from spade_tf.export import export_model
    from support.models import save_random_model

    model = kind.model
    if kind.classes_file is not None:
        (folder / "classes.txt").write_text(kind.classes_file)
        model = dataclasses.replace(model, classes=str(folder / "classes.txt"))
    model_dir = save_random_model(folder / "model", model, seed=kind.seed)
    version_dir = export_model(model_dir, folder / "exports", kind.name, warmup=kind.warmup)
    return {"model_dir": str(model_dir), "version_dir": str(version_dir)}


class Exports:
    """``exports(kind)``: the :class:`Export` of a kind of :data:`KINDS`."""

    def __init__(self, root: Path):
        self.root = root

    def __call__(self, kind: str) -> Export:
        spec = KINDS[kind]
        paths = once(self.root / kind, lambda folder: _export(spec, folder))
        model_dir = Path(paths["model_dir"])
        model = spec.model if spec.classes_file is None else dataclasses.replace(
            spec.model, classes=str(model_dir.parent / "classes.txt"))
        return Export(kind, spec.name, model, model_dir, Path(paths["version_dir"]))


# -- both loaders, one process ----------------------------------------------------------

LOADERS = """
import importlib.abc, io, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("spade_tf", "tfrecords_tools", "serving", "spade_cli"):
            raise ImportError(f"{name} must not be needed to load the export")
sys.meta_path.insert(0, Block())
import numpy as np
import tensorflow as tf
from PIL import Image

def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()

def inputs(size, batch):
    height, width = size
    labels = np.random.default_rng(0).integers(0, 4, (batch, height, width)).astype(np.int32)
    maps = [png(m.astype(np.uint8)) for m in labels]
    style = png(np.zeros((32, 32, 3), np.uint8))
    return {"label_ids": labels, "instance_ids": labels,
            "seed": np.arange(1, batch + 1, dtype=np.int64),
            "style_image": np.zeros((batch, 32, 32, 3), np.uint8),
            "label_png_bytes": np.array(maps, object),
            "instance_png_bytes": np.array(maps, object),
            "style_png_bytes": np.array([style] * batch, object),
            "request": np.zeros(batch, np.int32)}

def summary(value):
    value = np.asarray(value)
    if value.dtype == object or value.dtype.kind == "S":
        flat = [bytes(item) for item in value.reshape(-1)]
        return {"shape": list(value.shape), "dtype": "string",
                "head": [item[:8].hex() for item in flat],
                "json": [json.loads(item) if item[:1] == b"{" else None for item in flat]}
    return {"shape": list(value.shape), "dtype": value.dtype.name,
            "sum": float(value.astype(np.float64).sum())}

results = {}
for path, plan in PLAN.items():
    size = json.load(open(path + "/assets.extra/spade_model.json"))["image_size"]
    feeds = inputs(size, 2)
    tf2 = {}
    if plan["tf2"]:
        model = tf.saved_model.load(path)
        for name, function in model.signatures.items():
            if plan["tf2"] != "*" and name not in plan["tf2"]:
                continue
            wanted = function.structured_input_signature[1]
            out = function(**{key: tf.constant(feeds[key]) for key in wanted})
            tf2[name] = {key: summary(value.numpy()) for key, value in out.items()}
    session_results, inputs_of = {}, {}
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        for name, signature in meta.signature_def.items():
            if name.startswith("__"):  # the init op, not a serving signature
                continue
            inputs_of[name] = sorted(signature.inputs)
            if plan["session"] != "*" and name not in plan["session"]:
                continue
            feed = {info.name: feeds[key] for key, info in signature.inputs.items()}
            out = session.run({key: info.name for key, info in signature.outputs.items()}, feed)
            session_results[name] = {key: summary(value) for key, value in out.items()}
    results[path] = {"tf2": tf2, "session": session_results, "inputs": inputs_of}
try:
    import spade_tf  # noqa
    importable = True
except ImportError:
    importable = False
print(json.dumps({"exports": results, "spade_importable": importable}))
"""


def loaded_by_serving_loaders(root: Path, plan: dict[Export, dict]) -> dict:
    """Signatures of exports run in one fresh process where spade_tf, serving, spade_cli and
    tfrecords_tools cannot be imported, on a batch of 2 random label maps (ids 0..3, the
    instance maps the same; seeds 1 and 2; an all-black style), under
    ``tf.saved_model.load`` ("tf2") and the TF1 session loader ("session"). ``plan`` maps
    each export to ``{"tf2": [signatures], "session": [signatures]}`` ("*": all).

    Returns ``{"exports": {kind: {loader: {signature: {output: summary}}, "inputs":
    {signature: [input names]}}}, "spade_importable": bool}``; a summary holds shape and
    dtype, and the sum of numbers or the first 8 bytes (hex) and JSON of strings."""
    paths = {str(export.version_dir): export.kind for export in plan}

    def load(folder: Path) -> dict:
        steps = {str(export.version_dir): loaders for export, loaders in plan.items()}
        return run_python(f"PLAN = {steps!r}\n" + LOADERS, timeout=600)

    name = "loaded-" + "-".join(sorted(paths.values()))
    done = once(root / name, load)
    return {"exports": {paths[path]: result for path, result in done["exports"].items()},
            "spade_importable": done["spade_importable"]}
