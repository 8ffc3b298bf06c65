"""Training parity: GauGAN's step equals the suite's PyTorch reference step on the same weights.

Both frameworks start from the same tiny randomised reference networks (put into the
Keras ones with the converter's key table), see the same batch (instance edges included)
and the same reparameterisation noise, and take one generator step then one
discriminator step (``spade_tf.testing.torch_reference.ReferenceGauGAN``: hinge, feature
matching, VGG19 and KL terms) with SGD, so each weight change is the step's gradient
times the rate. Compared: every loss term, the change of every variable the step moves
(relative to that variable's largest change), and the spectral-norm vectors u, v and the
batch-norm running statistics the step updates; on one device and on 2 replicas
(MirroredStrategy over 2 logical CPUs, in a subprocess; synchronized batch norm makes
the 2-replica statistics those of the full batch, and the reference's KL is summed over
each of its 2 GPUs' examples).

Precision. The exact comparisons run both frameworks in float64: in float32 the
generator's gradients themselves are only good to ~1e-3 relative (PyTorch float32 against
float64: 7e-4 with the VGG term; TensorFlow float32 with its default oneDNN kernels:
9e-3, 9e-4 without the VGG term, 1e-5 with TF_ENABLE_ONEDNN_OPTS=0), which would hide
a real difference. float64 runs agree to ~2e-7 (see the constants). A float32 step
checks losses, statistics and the discriminator's change at the training precision.

The discriminator's float32 change is judged on a step where the generator's rate is 0:
after a generator update its hinge loss reacts to the new fake, which amplifies the
generator's rounding differences (0.2 relative at rate 0.1). A short Adam run (TorchAdam
against torch.optim.Adam(betas=(0, 0.9)), 3 steps) ends the file.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from support import ROOT, import_torch

torch = import_torch()  # under `make test` a missing torch is a failure, not a skip

from support.reference_step_worker import load_result, run_case  # noqa: E402

from spade_tf.config import ModelConfig  # noqa: E402
from spade_tf.testing import torch_reference as reference  # noqa: E402

WORKER = ROOT / "tests" / "support" / "reference_step_worker.py"
BATCH = 4
MODEL = ModelConfig(num_classes=5, use_dontcare_label=True, use_instance_edges=True,
                    crop_size=32, base_filters=4, spade_hidden_filters=8, latent_dim=16,
                    disc_filters=8, encoder_filters=4)
SGD_RATE = 0.1
# Measured worst (one device; 2 replicas within 5% of these):
# - float64 "gan": changes 1.9e-7, losses 1.4e-7, u/v/statistics 1.8e-8;
# - float64 "vae": changes 5.7e-6, losses 6e-8, states 2.6e-6 (the encoder's mean and
#   log-variance layers are float32 by design);
# - float32, generator's rate 0: D changes 1.6e-5, losses 2.6e-7, states 1.1e-6;
# - Adam, 3 steps: changes 6.4e-6 (relative L2), losses 1.4e-7.
CHANGE_TOLERANCE = 1e-4  # relative to the variable's largest change
LOSS_TOLERANCE = 1e-5  # relative
STATE_TOLERANCE = 1e-5  # absolute: u and v are unit vectors, statistics O(1)
# A variable "moves" when its reference gradient exceeds this fraction of the largest in
# its network: biases ahead of a normalization have a zero gradient (rounding noise).
MOVES = 1e-5


# -- the reference side ---------------------------------------------------------------


def _torch_networks(model: ModelConfig) -> dict:
    nets = {
        "generator": reference.SPADEGenerator(
            model.semantic_channels, crop_size=model.crop_size,
            num_upsampling_layers=model.num_upsampling_layers, use_vae=model.use_vae,
            base_filters=model.base_filters, latent_dim=model.latent_dim,
            norm_type="batch", spade_hidden=model.spade_hidden_filters),
        "discriminator": reference.MultiscaleDiscriminator(
            model.semantic_channels + 3, num_scales=model.num_discriminators,
            n_layers=model.disc_layers, base_filters=model.disc_filters),
    }
    if model.use_vae:
        nets["encoder"] = reference.ConvEncoder(model.encoder_filters, model.latent_dim)
    return {role: reference.randomize_(net, seed) for seed, (role, net) in
            enumerate(nets.items())}


def _batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    size = MODEL.crop_size
    labels = rng.integers(0, MODEL.num_classes, (BATCH, size // 4, size // 4))
    labels = labels.repeat(4, 1).repeat(4, 2)
    labels[:, :4, :4] = MODEL.dontcare_label
    instances = rng.integers(0, 3, (BATCH, size // 8, size // 8)).repeat(8, 1).repeat(8, 2)
    image = rng.uniform(-1, 1, (BATCH, size, size, 3))
    return {"label": labels.astype(np.int32), "instance": instances.astype(np.int32),
            "image": image.astype(np.float32)}


def _torch_state(trainer: reference.ReferenceGauGAN) -> dict:
    return {f"{role}/{key}": value.detach().numpy().copy()
            for role, net in trainer.networks().items()
            for key, value in net.state_dict().items() if not key.endswith("num_batches_tracked")}


def torch_run(case: dict, nets: dict, vgg, batch: dict, gpus: int) -> dict:
    """The reference's steps on copies of ``nets``: losses, states before and after, and the
    largest gradient of every parameter over the steps."""
    dtype = getattr(torch, case["dtype"])
    nets = {role: copy.deepcopy(net).to(dtype) for role, net in nets.items()}
    vgg = copy.deepcopy(vgg).to(dtype) if case["vgg"] else None
    trainer = reference.ReferenceGauGAN(
        nets["generator"], nets["discriminator"], nets.get("encoder"), vgg,
        vgg_weight=10.0 if vgg is not None else 0.0, gpus=gpus)
    make = {"sgd": lambda params, rate: torch.optim.SGD(params, lr=rate),
            "torch_adam": lambda params, rate: torch.optim.Adam(params, lr=rate,
                                                                betas=(0.0, 0.9))}
    g_opt = make[case["optimizer"]](trainer.generator_parameters(), case["g_lr"])
    d_opt = make[case["optimizer"]](nets["discriminator"].parameters(), case["d_lr"])
    semantic = reference.semantic_one_hot(batch["label"], MODEL.num_classes,
                                          MODEL.dontcare_label, batch["instance"]).to(dtype)
    image = torch.from_numpy(batch["image"].transpose(0, 3, 1, 2).copy()).to(dtype)
    noise = np.load(case["noise"])["noise"] if case["noise"] else None
    before = _torch_state(trainer)
    losses, gradients = [], {}
    for step in range(case["steps"]):
        pair = None if noise is None else tuple(torch.from_numpy(n).to(dtype)
                                                for n in noise[step])
        losses.append(trainer.train_step(semantic, image, g_opt, d_opt, pair))
        for key, value in trainer.gradients.items():
            gradients[key] = max(gradients.get(key, 0.0), float(value.abs().max()))
    return {"losses": losses, "before": before, "after": _torch_state(trainer),
            "gradients": gradients}


# -- cases ----------------------------------------------------------------------------


@dataclasses.dataclass
class Setup:
    workdir: object
    nets: dict  # "gan" / "vae" -> {role: torch network}
    vgg: object
    batch: dict


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    workdir = tmp_path_factory.mktemp("reference_step")
    vgg = reference.VGG19Features().randomize_(7)
    torch.save(vgg.state_dict(), workdir / "vgg19.pth")
    batch = _batch()
    np.savez(workdir / "batch.npz", **batch)
    noise = np.random.default_rng(5).standard_normal((3, 2, BATCH, MODEL.latent_dim))
    np.savez(workdir / "noise.npz", noise=noise.astype(np.float32))
    nets = {}
    for model in ("gan", "vae"):
        nets[model] = _torch_networks(dataclasses.replace(MODEL, use_vae=model == "vae"))
        for role, net in nets[model].items():
            reference.save_state_dict(net, str(workdir / f"{model}_{role}.pth"))
    return Setup(workdir, nets, vgg, batch)


# name -> (networks, settings). "gan": hinge + feature matching + VGG; "vae": hinge +
# feature matching with the encoder and the KL term, summed over each replica's examples
# as the reference does (kl_reduction="per_replica_sum"); the VGG term, per example,
# is the same on any number of replicas and costs most of the time, so it runs once.
CASES = {
    "gan": ("gan", {}),
    "vae": ("vae", {"vgg": False}),
    "gan_float32": ("gan", {"dtype": "float32", "g_lr": 0.0}),
    "adam": ("gan", {"optimizer": "torch_adam", "g_lr": 1e-4, "d_lr": 4e-4, "steps": 3,
                     "vgg": False}),
}
MIRRORED = ("gan", "vae")


def _case(setup: Setup, name: str) -> dict:
    model, changes = CASES[name]
    roles = ("generator", "discriminator") + (("encoder",) if model == "vae" else ())
    case = {"model": dataclasses.asdict(dataclasses.replace(MODEL, use_vae=model == "vae")),
            "weights": {role: str(setup.workdir / f"{model}_{role}.pth") for role in roles},
            "batch": str(setup.workdir / "batch.npz"),
            "noise": str(setup.workdir / "noise.npz") if model == "vae" else "",
            "vgg": True, "kl_reduction": "per_replica_sum", "dtype": "float64",
            "optimizer": "sgd", "g_lr": SGD_RATE, "d_lr": SGD_RATE, "steps": 1, **changes}
    case["vgg"] = str(setup.workdir / "vgg19.pth") if case["vgg"] else ""
    return case


@pytest.fixture(scope="module")
def torch_results(setup):
    cache = {}

    def get(name: str, gpus: int = 1) -> dict:
        if (name, gpus) not in cache:
            model = CASES[name][0]
            cache[name, gpus] = torch_run(_case(setup, name), setup.nets[model], setup.vgg,
                                          setup.batch, gpus)
        return cache[name, gpus]

    return get


@pytest.fixture(scope="module")
def keras_results(setup):
    cache = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = run_case(_case(setup, name))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def mirrored_process(setup):
    """The 2-replica cases, started in a subprocess at once to overlap the other tests."""
    cases = {name: _case(setup, name) for name in MIRRORED}
    (setup.workdir / "cases.json").write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, str(WORKER), str(setup.workdir)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def mirrored(setup, mirrored_process) -> dict:
    try:
        _, stderr = mirrored_process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        mirrored_process.kill()
        raise
    assert mirrored_process.returncode == 0, stderr[-4000:]
    return {name: load_result(setup.workdir / f"{name}.npz") for name in MIRRORED}


# -- comparisons ----------------------------------------------------------------------


def _role(key: str) -> str:
    return key.split("/", 1)[0]


def _is_state(key: str) -> bool:
    return key.endswith(("weight_u", "weight_v", "running_mean", "running_var"))


def _worst(errors: dict) -> tuple[float, str]:
    return max((value, key) for key, value in errors.items())


def change_errors(keras: dict, expected: dict, roles: tuple[str, ...], norm=np.inf) -> dict:
    """{key: |Keras change - reference change| / |reference change|} (max norm, or the
    ``norm`` given) over the variables of ``roles`` that the steps move."""
    assert set(keras["after"]) == set(expected["after"])
    gradients = expected["gradients"]
    largest = {role: max(v for k, v in gradients.items() if _role(k) == role) for role in roles}
    errors = {}
    for key, after in expected["after"].items():
        if _role(key) not in roles or _is_state(key):
            continue
        np.testing.assert_array_equal(keras["before"][key], expected["before"][key])
        if gradients[key] <= MOVES * largest[_role(key)]:
            continue
        change = after - expected["before"][key]
        keras_change = keras["after"][key] - keras["before"][key]
        errors[key] = float(np.linalg.norm((keras_change - change).ravel(), norm)
                            / np.linalg.norm(change.ravel(), norm))
    assert len(errors) > 10, errors
    return errors


def state_errors(keras: dict, expected: dict) -> dict:
    """{key: max absolute difference} of u, v and running statistics after the steps."""
    errors = {}
    for key, value in expected["after"].items():
        if _is_state(key):
            assert np.abs(value - expected["before"][key]).max() > 1e-4, key  # updated
            errors[key] = float(np.abs(keras["after"][key] - value).max())
    assert len(errors) > 10
    return errors


def loss_errors(keras_losses: dict, expected: dict) -> dict:
    """{name: relative difference} of every loss term of the reference."""
    for name in set(keras_losses) - set(expected):
        assert keras_losses[name] == 0.0, name  # terms switched off on both sides
    return {name: abs(keras_losses[name] - value) / abs(value)
            for name, value in expected.items()}


def check_step(keras: dict, expected: dict, roles: tuple[str, ...]) -> dict:
    """Asserts losses, changes of ``roles`` and states; returns the worst of each."""
    worst = {"losses": _worst(loss_errors(keras["losses"][0], expected["losses"][0])),
             "changes": _worst(change_errors(keras, expected, roles)),
             "states": _worst(state_errors(keras, expected))}
    assert worst["losses"][0] < LOSS_TOLERANCE, worst
    assert worst["changes"][0] < CHANGE_TOLERANCE, worst
    assert worst["states"][0] < STATE_TOLERANCE, worst
    return worst


def _all_roles(result: dict) -> tuple[str, ...]:
    return tuple(sorted({_role(key) for key in result["after"]}))


# -- tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gan", "vae"])
def test_one_device_step_equals_the_reference(name, mirrored_process, keras_results,
                                              torch_results):
    keras = keras_results(name)
    check_step(keras, torch_results(name), _all_roles(keras))


@pytest.mark.parametrize("name", MIRRORED)
def test_two_replica_step_equals_the_reference_on_two_gpus(name, mirrored, torch_results):
    check_step(mirrored[name], torch_results(name, gpus=2), _all_roles(mirrored[name]))


def test_kl_term_is_the_reference_sum_over_each_gpu(mirrored, keras_results, torch_results):
    """The KL term of one device (4 examples) is twice that of 2 replicas (2 each)."""
    one, two = keras_results("vae")["losses"][0], mirrored["vae"]["losses"][0]
    assert one["g_kl"] > 0.1
    np.testing.assert_allclose(one["g_kl"], 2 * two["g_kl"], rtol=1e-6)
    np.testing.assert_allclose(two["g_kl"], torch_results("vae", gpus=2)["losses"][0]["g_kl"],
                               rtol=LOSS_TOLERANCE)


def test_float32_step_with_a_still_generator(keras_results, torch_results):
    check_step(keras_results("gan_float32"), torch_results("gan_float32"), ("discriminator",))


def test_torch_adam_steps_equal_torch_optim_adam(keras_results, torch_results):
    keras, expected = keras_results("adam"), torch_results("adam")
    for ours, theirs in zip(keras["losses"], expected["losses"], strict=True):
        worst = _worst(loss_errors(ours, theirs))
        assert worst[0] < LOSS_TOLERANCE, worst
    # Relative L2 norm of each variable's change error: Adam scales every element's step
    # to about the rate, so an element whose gradient is ~1e-4 of its variable's largest
    # turns the float32 rounding of the loss terms (losses.py computes in float32) into a
    # 3e-4 element error (measured), while keras.optimizers.Adam is off by 0.13.
    worst = _worst(change_errors(keras, expected, _all_roles(keras), norm=2))
    assert worst[0] < CHANGE_TOLERANCE, worst
