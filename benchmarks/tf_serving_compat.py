"""Do our exports load and give the same outputs in an older TensorFlow (TF Serving's)?

TF Serving X.Y is built on TensorFlow X.Y and loads a SavedModel with that release's
loader and kernels, so an export made with our TensorFlow (2.21) works in TF Serving 2.20
only if every op and attribute of its graph exists in TensorFlow 2.20. On tiny models:

1. creates (or reuses) a virtual environment with PyPI ``tensorflow==2.20.0`` (``--venv``,
   default ``.cache/tf220-venv``; ~600 MB to download the first time);
2. exports with our TensorFlow (``spade_tf.export``) tiny calibrated models: a VAE one with
   instance edges (8 signatures), a plain one (3) and the VAE one at bfloat16;
3. runs every signature on the warm-up requests' inputs (all-zeros maps) and on random
   inputs of the same shapes, here (the reference) and in the old TensorFlow with two
   loaders: ``tf.saved_model.load`` and the TF1 session loader
   (``tf.compat.v1.saved_model.load``, closest to TF Serving: the MetaGraph imported
   against that release's op registry, its signature_def run with ``Session.run``);
4. compares: uint8 outputs equal, floats within ``--atol``, PNGs equal once decoded,
   strings equal; outputs that differ between two reference runs (a VAE's random style)
   by dtype and shape only. Prints a table; exits 0 when all match, else 1 (last line: why).

    python benchmarks/tf_serving_compat.py [--venv .cache/tf220-venv] [--tf-version 2.20.0]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Only the standard library at module level: the same file runs as the worker in the old
# environment, which has TensorFlow and numpy but not this project's dependencies.
from benchmarks.common import format_table, progress, run_script, write_json  # noqa: E402

LOADERS = ("tf2", "session")  # tf.saved_model.load; the TF1 session loader (TF Serving's)
HEARTBEAT_S = 30.0


# -- the old environment --------------------------------------------------------------


def _installed_version(python: Path) -> str | None:
    """The TensorFlow version importable by ``python`` (None when it has none)."""
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", "import tensorflow as tf; print(tf.__version__)"],
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    words = done.stdout.split()
    return words[-1] if done.returncode == 0 and words else None


def _pip_install(python: Path, requirement: str, log: Path) -> int:
    """``pip install requirement`` into ``log``: a progress line per main step, and one
    every HEARTBEAT_S seconds while nothing else happens. Returns pip's exit status."""
    steps = ("Collecting tensorflow", "Downloading tensorflow", "Installing collected",
             "Successfully installed", "ERROR")
    start = last = time.monotonic()
    with open(log, "w") as out, open(log) as reader:
        process = subprocess.Popen([str(python), "-m", "pip", "install", "--progress-bar",
                                    "off", requirement], stdout=out, stderr=subprocess.STDOUT)
        while True:
            running = process.poll() is None
            for line in reader.readlines():
                if line.startswith(steps):
                    progress(f"pip: {line.strip()[:150]}")
                    last = time.monotonic()
            if not running:
                return process.returncode
            if time.monotonic() - last >= HEARTBEAT_S:
                progress(f"pip: still running ({time.monotonic() - start:.0f} s; log {log})")
                last = time.monotonic()
            time.sleep(1.0)


def ensure_venv(venv: Path, tf_version: str) -> Path:
    """The Python of a virtual environment at ``venv`` with ``tensorflow==tf_version``,
    created and installed when missing; raises RuntimeError when the install fails."""
    python = venv / "bin" / "python"
    found = _installed_version(python)
    if found == tf_version:
        progress(f"reusing {venv} (TensorFlow {found})")
        return python
    if not python.exists():
        progress(f"creating the virtual environment {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = venv.parent / f"{venv.name}-pip.log"
    progress(f"installing tensorflow=={tf_version} into {venv} (about 600 MB; pip log {log})")
    status = _pip_install(python, f"tensorflow=={tf_version}", log)
    found = _installed_version(python)
    if status != 0 or found != tf_version:
        lines = log.read_text().strip().splitlines() or ["(nothing)"]
        said = [line for line in lines if line.startswith("ERROR")][-1:] or lines[-1:]
        raise RuntimeError(f"tensorflow=={tf_version} could not be installed into {venv} "
                           f"(pip exit status {status}, log {log}): {said[0][:300]}")
    progress(f"installed TensorFlow {found}")
    return python


# -- arrays across the two environments (no numpy pickles: versions may differ) --------


def _pack(value) -> dict:
    import numpy as np

    # TensorFlow's strings are bytes (Session.run gives a scalar one as bytes itself).
    value = np.array(value, object) if isinstance(value, bytes) else np.asarray(value)
    if value.dtype == object:
        return {"kind": "bytes", "shape": value.shape, "items": [*value.reshape(-1)]}
    return {"kind": "array", "dtype": value.dtype.str, "shape": value.shape,
            "data": value.tobytes()}


def _unpack(packed: dict):
    import numpy as np

    if packed["kind"] == "bytes":
        return np.array(packed["items"], object).reshape(packed["shape"])
    return np.frombuffer(packed["data"], packed["dtype"]).reshape(packed["shape"])


# -- the worker: runs in the old environment --------------------------------------------


def _run_tf2(tf, path: str, requests: dict, loaded=None) -> dict:
    loaded = loaded or tf.saved_model.load(path)
    return {name: {key: _pack(tensor.numpy()) for key, tensor in loaded.signatures[name](
        **{key: tf.constant(_unpack(value)) for key, value in inputs.items()}).items()}
            for name, inputs in requests.items()}


def _run_session(tf, path: str, requests: dict) -> dict:
    v1 = tf.compat.v1
    results = {}
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        meta_graph = v1.saved_model.load(session, ["serve"], path)
        for name, inputs in requests.items():
            signature = meta_graph.signature_def[name]
            feed = {signature.inputs[key].name: _unpack(value) for key, value in inputs.items()}
            keys = sorted(signature.outputs)
            values = session.run([signature.outputs[key].name for key in keys], feed)
            results[name] = {key: _pack(value) for key, value in zip(keys, values, strict=True)}
    return results


def worker(job: Path) -> None:
    """Load each export of ``job/requests.pkl`` with both loaders; write ``outputs.pkl``."""
    import tensorflow as tf

    jobs = pickle.loads((job / "requests.pkl").read_bytes())
    answer: dict = {"tensorflow": tf.__version__, "models": {}}
    for model, (path, requests) in jobs.items():
        answer["models"][model] = {}
        for loader, run in (("tf2", _run_tf2), ("session", _run_session)):
            progress(f"TF {tf.__version__}: {' '.join(model)}: loading with the {loader} "
                     f"loader and running {len(requests)} signatures")
            try:
                answer["models"][model][loader] = run(tf, path, requests)
            except Exception as error:  # any failure to load or run is the finding
                message = f"{type(error).__name__}: {' '.join(str(error).split())}"
                answer["models"][model][loader] = message[:300]
    (job / "outputs.pkl").write_bytes(pickle.dumps(answer))


# -- the check: runs in this project's environment --------------------------------------


def _calibrated_generator(config, seed: int):
    """A random generator with images across [0, 255] (untrained, they are all 0 or 255)."""
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(ROOT / "tests"))
    from support.models import calibrated_generator  # the test suite's tiny models

    from spade_tf.models import build_semantic_input

    def inputs_of(step: int) -> dict:
        rng = np.random.default_rng(step)
        height, width = config.image_size
        blocks = rng.integers(0, config.num_classes, (2, height // 8, width // 8))
        labels = np.kron(blocks, np.ones((8, 8), np.int64)).astype(np.int32)
        inputs = {"semantic": build_semantic_input(config)(
            labels, labels if config.use_instance_edges else None)}
        if config.use_vae:
            inputs["latent"] = tf.random.stateless_normal((2, config.latent_dim), (step, 0))
        return inputs

    return calibrated_generator(config, inputs_of, seed=seed)


def _export_models(work: Path) -> dict[str, Path]:
    """Tiny exports (random weights): {name: version folder}."""
    from spade_tf.config import Config, ModelConfig
    from spade_tf.export import export_model
    from spade_tf.model_dir import ModelDir, save_model_dir
    from spade_tf.models import build_encoder

    vae = ModelConfig(num_classes=4, use_instance_edges=True, crop_size=64, base_filters=4,
                      spade_hidden_filters=8, use_vae=True, latent_dim=8, encoder_filters=4,
                      encoder_input_size=128)
    plain = ModelConfig(num_classes=5, crop_size=64, base_filters=4, spade_hidden_filters=8)
    exports = {}
    for name, config, precision, seed in (("vae", vae, "float32", 11),
                                          ("plain", plain, "float32", 12),
                                          ("vae-bf16", vae, "bfloat16", 11)):
        progress(f"exporting {name} ({precision})")
        generator = _calibrated_generator(config, seed)
        networks = ModelDir(Config(model=config), generator,
                            encoder=build_encoder(config) if config.use_vae else None)
        model_dir = save_model_dir(work / f"{name}-model", networks)
        exports[name] = export_model(model_dir, work / "exports", name, warmup=True,
                                     precision=precision)
    return exports


def _warmup_inputs(version_dir: Path) -> dict:
    """{signature: {input: array}} from the export's TF Serving warm-up records."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from spade_tf import layout

    requests = {}
    for record in tf.data.TFRecordDataset(str(version_dir / layout.WARMUP_FILE)):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        requests[request.model_spec.signature_name] = {
            key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
    return requests


def _random_inputs(version_dir: Path, requests: dict, seed: int) -> dict:
    """The warm-up requests' inputs with random content (all zeros may hide differences):
    ids within the model's classes, random seeds, noise photos, and PNGs of those."""
    import numpy as np
    import tensorflow as tf

    from spade_tf import layout
    from spade_tf import signatures as sig

    num_classes = json.loads((version_dir / layout.SPADE_METADATA_FILE).read_text())["num_classes"]
    highs = {sig.LABEL_IDS: num_classes, sig.INSTANCE_IDS: num_classes, sig.SEED: 2**31,
             sig.STYLE_IMAGE: 256, sig.LABEL_PNG: num_classes, sig.INSTANCE_PNG: num_classes,
             sig.STYLE_PNG: 256}
    rng = np.random.default_rng(seed)

    def randomized(key: str, value: np.ndarray) -> np.ndarray:
        if key not in highs:  # model_info's request: any value
            return value
        if value.dtype != object:
            return rng.integers(0, highs[key], value.shape).astype(value.dtype)
        pngs = [tf.io.encode_png(rng.integers(0, highs[key], tf.io.decode_png(item).shape)
                                 .astype(np.uint8)).numpy() for item in value.reshape(-1)]
        return np.array(pngs, object).reshape(value.shape)

    return {name: {key: randomized(key, value) for key, value in inputs.items()}
            for name, inputs in requests.items()}


def _reference(path: Path, requests: dict) -> tuple[dict, set]:
    """Every signature's outputs here (packed), and the (signature, output) pairs that
    differ between two runs (random)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if missing := sorted(set(loaded.signatures.keys()) - set(requests)):
        raise RuntimeError(f"{path}: no warm-up request for {', '.join(missing)}")
    first, second = (_run_tf2(tf, str(path), requests, loaded) for _ in range(2))
    return first, {(name, key) for name, outputs in first.items() for key in outputs
                   if outputs[key] != second[name][key]}


def _decoded(value):
    """PNG bytes decoded to pixels, other strings as they are."""
    import numpy as np
    import tensorflow as tf

    if value.dtype == object and value.size and bytes(value.flat[0])[:4] == b"\x89PNG":
        return np.stack([tf.io.decode_png(item).numpy() for item in value.reshape(-1)])
    return value


def _compare(expected: dict, actual: dict, random: bool, atol: float) -> tuple[bool, str]:
    """(matches, what was found) for one output."""
    import numpy as np

    want, got = _decoded(_unpack(expected)), _decoded(_unpack(actual))
    if want.dtype != got.dtype or want.shape != got.shape:
        return False, f"{got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}"
    if random:
        return True, f"random: {got.dtype}{list(got.shape)} as expected"
    if want.dtype == object:
        same = bool(np.array_equal(want, got))
        return same, "equal" if same else "differ"
    difference = np.abs(want.astype(np.float64) - got.astype(np.float64))
    largest = float(difference.max()) if difference.size else 0.0
    if want.dtype.kind in "ui":  # the images: how many distinct values were compared
        differing, distinct = int((difference > 0).sum()), len(np.unique(want))
        return differing == 0, (f"equal ({distinct} distinct values)" if differing == 0
                                else f"{differing} values differ (max {largest:g})")
    return largest <= atol, f"max |diff| {largest:.2e}"


def check(args: argparse.Namespace) -> int:
    """The whole check; returns the exit status."""
    python = ensure_venv(args.venv, args.tf_version)
    import tensorflow as tf

    work = Path(tempfile.mkdtemp(prefix="spade-tf-compat-"))
    try:
        exports = _export_models(work)
        jobs, references = {}, {}
        for name, path in exports.items():
            progress(f"{name}: reference outputs with TensorFlow {tf.__version__}")
            warmup = _warmup_inputs(path)
            for inputs_name, requests in (("warm-up", warmup),
                                          ("random", _random_inputs(path, warmup, seed=5))):
                packed = {signature: {key: _pack(value) for key, value in inputs.items()}
                          for signature, inputs in requests.items()}
                references[name, inputs_name] = _reference(path, packed)
                jobs[name, inputs_name] = (str(path), packed)
        (work / "requests.pkl").write_bytes(pickle.dumps(jobs))
        progress(f"loading the exports with {python}")
        done = subprocess.run([str(python), __file__, "--worker", str(work)],
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if done.returncode != 0 or not (work / "outputs.pkl").exists():
            print(f"FAILED: the TensorFlow {args.tf_version} worker exited with status "
                  f"{done.returncode} (its messages are above)")
            return 1
        answer = pickle.loads((work / "outputs.pkl").read_bytes())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for (name, inputs_name), (reference, random) in references.items():
        for loader in LOADERS:
            result = answer["models"][name, inputs_name][loader]
            if isinstance(result, str):  # the export did not load (or a signature not run)
                rows.append([name, inputs_name, loader, "(load)", "-", "FAIL", result])
                continue
            for signature in sorted(reference):
                for key in sorted(reference[signature]):
                    actual = result.get(signature, {}).get(key)
                    ok, found = ((False, "missing") if actual is None else
                                 _compare(reference[signature][key], actual,
                                          (signature, key) in random, args.atol))
                    rows.append([name, inputs_name, loader, signature, key,
                                 "ok" if ok else "FAIL", found])
    headers = ["model", "inputs", "loader", "signature", "output", "result", "details"]
    print(f"exports made with TensorFlow {tf.__version__}, loaded with TensorFlow "
          f"{answer['tensorflow']} ({args.venv})")
    print(format_table(headers, [row[:-1] + [row[-1][:100]] for row in rows], align="l" * 7))
    write_json(args.json, {"ours": tf.__version__, "theirs": answer["tensorflow"],
                           "rows": [dict(zip(headers, row, strict=True)) for row in rows]})
    failures = sum(row[5] == "FAIL" for row in rows)
    checked = len(rows)
    if failures:
        print(f"FAILED: {failures} of {checked} checks failed: TF {tf.__version__} exports do "
              f"not all load or match in TensorFlow {answer['tensorflow']} (TF Serving "
              f"{answer['tensorflow']})")
        return 1
    print(f"OK: all {checked} checks passed: every signature of the {len(exports)} exports "
          f"loads in TensorFlow {answer['tensorflow']} with both loaders and matches "
          f"TensorFlow {tf.__version__}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".cache" / "tf220-venv",
                        help="the old TensorFlow's virtual environment, created when "
                             "missing (.cache/tf220-venv)")
    parser.add_argument("--tf-version", default="2.20.0",
                        help="the TensorFlow (= TF Serving) release to check (2.20.0)")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest difference allowed for float outputs (1e-4)")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the rows here")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker)
        return
    try:
        sys.exit(check(args))
    except RuntimeError as error:
        print(f"FAILED: {error}")
        sys.exit(1)


if __name__ == "__main__":
    run_script(main)
