"""The layers and networks on JAX and PyTorch: the same ``.keras`` files give TensorFlow's
outputs (1e-5) and the PyTorch reference's (1e-4), files saved there load here, the
README's layer example trains with ``model.fit``, batch norm trains, bad ids are named, and
a converted full-size ADE20K generator gives TensorFlow's image.

Each backend runs in a process of its own (``KERAS_BACKEND``), one per backend for every
check (tests/support/backend_worker.py). The quick test is in the default suite; the
rest, converted reference networks on both backends (minutes), in the end-to-end tier.
"""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from support import ROOT, import_torch
from support.backend_worker import as_called, flat_outputs, save_outputs
from support.processes import command_env
from support.reference_checkpoints import (
    calibrate_batch_norm_,
    tiny_config,
    torch_discriminator,
    torch_encoder,
    torch_generator,
)

from spade_tf.config import load_config
from spade_tf.convert import convert_reference_checkpoints
from spade_tf.layers import ParameterFreeBatchNorm, SemanticInput, SPADEResBlock
from spade_tf.models import build_semantic_input
from spade_tf.testing import torch_reference as reference

torch = import_torch()

WORKER = ROOT / "tests" / "support" / "backend_worker.py"
BACKENDS = ("jax", "torch")
# Model outputs: the largest difference over the output's scale (at least 1; backend_worker).
SAME_FILE_TOLERANCE = 1e-5
REFERENCE_TOLERANCE = 1e-4
NETWORKS = ("generator", "discriminator", "vae_generator", "encoder", "more_generator")
# needs_tensorflow last: it imports TensorFlow.
ALL_CHECKS = ("imports", "models", "save", "semantic", "ids", "batch_norm", "fit",
              "needs_tensorflow")


def run_worker(backend: str, job, checks, timeout: float = 600, **env: str) -> dict:
    env = command_env(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", **env)
    result = subprocess.run([sys.executable, str(WORKER), str(job), *checks], env=env,
                            capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if result.returncode != 0:
        raise AssertionError(f"the {backend} worker failed:\n{result.stderr[-4000:]}")
    return json.loads((job / f"result_{backend}.json").read_text())


def _nhwc(tensor) -> np.ndarray:
    array = tensor.numpy()
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


def _labels(config, seed: int = 0):
    height, width = config.model.image_size
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, config.model.num_classes, (2, height, width))
    labels[:, : height // 4, : width // 4] = config.model.dontcare_label
    instances = rng.integers(0, 4, (2, height // 8, width // 8)).repeat(8, 1).repeat(8, 2)
    return labels.astype(np.int32), instances.astype(np.int32)


def _add_model(job, name: str, model, inputs: dict, torch_outputs=None) -> list:
    """``name``.keras with its inputs and TF's outputs (and the reference's) in ``job``."""
    model.save(job / f"{name}.keras")
    np.savez(job / f"{name}_inputs.npz", **inputs)
    save_outputs(job / f"{name}_tf.npz", flat_outputs(model(as_called(inputs), training=False)))
    sources = ["tf"]
    if torch_outputs is not None:
        save_outputs(job / f"{name}_torch.npz", [_nhwc(t) for t in torch_outputs])
        sources.append("torch")
    return sources


def _reference_networks(job) -> dict:
    """Randomised reference networks converted under TF: G (instance edges, don't-care),
    D, a VAE G with its encoder, and a G of "more" upsampling; returns models.json's
    content."""
    config, vae_config = tiny_config(), tiny_config(use_vae=True)
    more_config = tiny_config(num_upsampling_layers="more")
    paths = {}
    for name, network in (("G", torch_generator(config)), ("D", torch_discriminator(config)),
                          ("VG", torch_generator(vae_config)), ("E", torch_encoder(vae_config)),
                          ("MG", torch_generator(more_config))):
        paths[name] = job / f"{name}.pth"
        reference.save_state_dict(network, str(paths[name]))
        paths[name + "_network"] = network
    plain = convert_reference_checkpoints(config, job / "plain", generator=paths["G"],
                                          discriminator=paths["D"])
    vae = convert_reference_checkpoints(vae_config, job / "vae", generator=paths["VG"],
                                        encoder=paths["E"])
    more = convert_reference_checkpoints(more_config, job / "more", generator=paths["MG"])
    labels, instances = _labels(config)
    semantic = build_semantic_input(config.model)(labels, instances).numpy()
    torch_semantic = reference.semantic_one_hot(
        labels, 5, dontcare_label=config.model.dontcare_label, instance_ids=instances)
    rng = np.random.default_rng(1)
    latent = rng.standard_normal((2, 16)).astype(np.float32)
    image = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    torch_image = torch.from_numpy(image.transpose(0, 3, 1, 2).copy())
    load = keras.saving.load_model
    with torch.no_grad():
        mean, log_variance = paths["E_network"](torch_image)
        return {
            "generator": _add_model(job, "generator", load(plain / "generator.keras"),
                                    {"semantic": semantic},
                                    [paths["G_network"](torch_semantic)]),
            "discriminator": _add_model(
                job, "discriminator", load(plain / "discriminator.keras"),
                {"semantic": semantic, "image": image},
                [f for scale in paths["D_network"](torch.cat([torch_semantic, torch_image], 1))
                 for f in scale]),
            "vae_generator": _add_model(
                job, "vae_generator", load(vae / "generator.keras"),
                {"semantic": semantic, "latent": latent},
                [paths["VG_network"](torch_semantic, torch.from_numpy(latent))]),
            "encoder": _add_model(job, "encoder", load(vae / "encoder.keras"), {"image": image},
                                  [log_variance, mean]),  # sorted keys: log_variance, mean
            "more_generator": _add_model(job, "more_generator", load(more / "generator.keras"),
                                         {"semantic": semantic},
                                         [paths["MG_network"](torch_semantic)]),
        }


def _write_semantic_and_batch_norm(job) -> None:
    labels, instances = _labels(tiny_config(), seed=5)
    layer = SemanticInput(5, use_dontcare_label=True, use_instance_edges=True)
    np.savez(job / "semantic.npz", labels=labels, instances=instances,
             semantic=layer(labels, instances).numpy())
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(3.0, 2.0, (2, 5, 5, 3)).astype(np.float32))
    weights = rng.normal(size=(2, 5, 5, 3)).astype(np.float32)
    norm = ParameterFreeBatchNorm()
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = norm(x, training=True)
        loss = tf.reduce_sum(outputs * weights)
    np.savez(job / "batch_norm.npz", x=x.numpy(), weights=weights, outputs=outputs.numpy(),
             gradient=tape.gradient(loss, x).numpy(), moving_mean=norm.moving_mean.numpy(),
             moving_variance=norm.moving_variance.numpy())


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backends")
    (folder / "models.json").write_text(json.dumps(_reference_networks(folder)))
    _write_semantic_and_batch_norm(folder)
    return folder


@pytest.fixture(scope="module")
def results(job):
    """Every check on every backend: one process each."""
    return {backend: run_worker(backend, job, ALL_CHECKS) for backend in BACKENDS}


@pytest.mark.parametrize("backend", BACKENDS)
def test_layers_and_networks_import_without_tensorflow(results, backend):
    assert results[backend]["imports"]["tensorflow"] is False


@pytest.mark.parametrize("backend", BACKENDS)
def test_files_saved_under_tensorflow_give_its_outputs_and_the_references(results, backend):
    models = results[backend]["models"]
    assert set(models) == set(NETWORKS)
    for name, differences in models.items():
        assert differences["tf"] < SAME_FILE_TOLERANCE, (name, differences)
        assert differences["torch"] < REFERENCE_TOLERANCE, (name, differences)


@pytest.mark.parametrize("backend", BACKENDS)
def test_files_saved_there_load_under_tensorflow(results, job, backend):
    for name in NETWORKS:
        model = keras.saving.load_model(job / backend / f"{name}.keras")
        inputs = dict(np.load(job / f"{name}_inputs.npz"))
        expected = np.load(job / f"{name}_tf.npz")
        actual = flat_outputs(model(as_called(inputs), training=False))
        for index, array in enumerate(actual):
            np.testing.assert_allclose(array, expected[f"out{index}"], rtol=0,
                                       atol=SAME_FILE_TOLERANCE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_semantic_input_and_batch_norm_training_agree_with_tensorflow(results, backend):
    assert results[backend]["semantic"]["difference"] == 0
    for key, difference in results[backend]["batch_norm"].items():
        assert difference < SAME_FILE_TOLERANCE, (key, difference)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bad_label_id_is_named(results, backend):
    ids = results[backend]["ids"]
    assert ids["eager"].startswith("ValueError") and "found id 9" in ids["eager"]
    assert "label ids must be in 0..3" in ids["eager"]
    if backend == "jax":  # inside jit: raised when the compiled function runs
        assert ids["jit_good"] is None
        assert "found id 9" in ids["jit"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_and_export_say_they_need_the_tensorflow_backend(results, backend):
    for module, error in results[backend]["needs_tensorflow"].items():
        assert error.startswith("NeedsTensorFlowError"), (module, error)
        assert f"this process runs '{backend}': set KERAS_BACKEND=tensorflow" in error


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_readme_layer_example_trains_with_fit(results, backend):
    fit = results[backend]["fit"]
    assert np.all(np.isfinite(fit["loss"])), fit
    assert fit["loss"][-1] < fit["loss"][0], fit
    assert fit["trainable_moved"] > 0
    assert fit["moving_statistics"] >= 4 and fit["moving_moved"] > 0


def test_batch_norm_statistics_are_the_global_batchs_under_jax_data_parallel(tmp_path):
    """Under keras.distribution.DataParallel (two host devices) a batch is one sharded
    array: the batch norm's statistics are the global batch's, as sync_batch asks."""
    env_flags = "--xla_force_host_platform_device_count=2"
    result = run_worker("jax", tmp_path, ("data_parallel",), timeout=300,
                        XLA_FLAGS=env_flags)["data_parallel"]
    assert result["devices"] == 2
    assert result["vs_global"] < 1e-5
    assert result["vs_first_device"] > 0.5


def test_a_spade_block_saved_under_tensorflow_runs_on_torch_and_ids_are_checked_in_jax_jit(
        tmp_path):
    """The default suite's cross-backend check: one small file on PyTorch (loading builds
    eagerly: milliseconds there, seconds of per-op compiling on JAX), the id check inside
    ``jax.jit``, neither process importing TensorFlow."""
    semantic = keras.Input((16, 16, 4), name="semantic")
    features = keras.Input((8, 8, 6), name="features")
    block = SPADEResBlock(5, norm_type="batch", hidden_filters=8, name="block")
    model = keras.Model({"semantic": semantic, "features": features},
                        block(features, semantic))
    rng = np.random.default_rng(0)
    for variable in block.non_trainable_variables:  # statistics as after training
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
    inputs = {"semantic": rng.uniform(size=(2, 16, 16, 4)).astype(np.float32),
              "features": rng.normal(size=(2, 8, 8, 6)).astype(np.float32)}
    (tmp_path / "models.json").write_text(json.dumps(
        {"block": _add_model(tmp_path, "block", model, inputs)}))
    on_torch = run_worker("torch", tmp_path, ("imports", "models", "ids"), timeout=120)
    assert on_torch["imports"]["tensorflow"] is False
    assert on_torch["models"]["block"]["tf"] < SAME_FILE_TOLERANCE
    assert "found id 9" in on_torch["ids"]["eager"]
    on_jax = run_worker("jax", tmp_path, ("imports", "ids"), timeout=120)
    assert on_jax["imports"]["tensorflow"] is False
    assert "found id 9" in on_jax["ids"]["jit"] and on_jax["ids"]["jit_good"] is None


def test_a_converted_ade20k_generator_gives_tensorflows_image_on_each_backend(tmp_path):
    """The full-size ADE20K generator (configs/ade20k.yaml, 256x256) converted from the
    reference: JAX and PyTorch give TensorFlow's image and the reference's.

    At this depth float32 itself sets the bound: TensorFlow without oneDNN (its other CPU
    kernels, same file) already differs from TensorFlow with it by ~1.6e-5 at the worst
    pixel (AMD EPYC). So the largest difference may be up to 1.5 times that spread,
    measured here, and the mean difference must be under 1e-5 (it is ~2e-6).
    """
    config = load_config(ROOT / "configs" / "ade20k.yaml")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 151, (1, 16, 16)).repeat(16, 1).repeat(16, 2).astype(np.int32)
    torch_semantic = reference.semantic_one_hot(labels, 151)
    network = torch_generator(config)
    calibrate_batch_norm_(network, torch_semantic)
    reference.save_state_dict(network, str(tmp_path / "G.pth"))
    folder = convert_reference_checkpoints(config, tmp_path / "ade20k",
                                           generator=tmp_path / "G.pth")
    with torch.no_grad():
        expected = network(torch_semantic)
    unsaturated = float(np.mean(np.abs(expected.numpy()) < 0.99))
    assert unsaturated > 0.5, unsaturated  # an image, not a sign pattern
    semantic = build_semantic_input(config.model)(labels).numpy()
    (tmp_path / "models.json").write_text(json.dumps({"generator": _add_model(
        tmp_path, "generator", keras.saving.load_model(folder / "generator.keras"),
        {"semantic": semantic}, [expected])}))
    run_worker("tensorflow", tmp_path, ("models",), TF_ENABLE_ONEDNN_OPTS="0")
    for backend in BACKENDS:
        run_worker(backend, tmp_path, ("models",))
    image = {source: np.load(tmp_path / f"generator_{source}.npz")["out0"].astype(np.float64)
             for source in ("tf", "torch", "tensorflow", *BACKENDS)}
    tensorflow_spread = np.abs(image["tensorflow"] - image["tf"]).max()
    assert tensorflow_spread < 1e-4, tensorflow_spread
    for backend in BACKENDS:
        for source, bound in (("tf", max(SAME_FILE_TOLERANCE, 1.5 * tensorflow_spread)),
                              ("torch", REFERENCE_TOLERANCE)):
            difference = np.abs(image[backend] - image[source])
            assert difference.max() < bound, (backend, source, difference.max(), bound)
            assert difference.mean() < SAME_FILE_TOLERANCE, (backend, source, difference.mean())
