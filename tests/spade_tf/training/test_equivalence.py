"""One step on 2 replicas (or 2 workers) equals one step on one device, same global batch:
the weights, and the generator average with its batch norm re-estimated on the batch (the
same on every replica and worker)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
from support import ROOT
from support.processes import Processes
from support.runs import session_run

WORKER = ROOT / "tests" / "support" / "one_step_worker.py"
# In float64 the split cannot matter beyond rounding (measured 2e-15); in float32 the
# gradients through SPADE's synchronized batch statistics are only good to ~1e-3 relative
# (TensorFlow's oneDNN kernels; see test_reference_step.py), so the proof runs in float64.
TOLERANCE = 1e-10  # the weights themselves move by up to ~0.6 in this step
TIMEOUT = 300


def _args(mode: str, workdir) -> list[str]:
    return [sys.executable, str(WORKER), mode, str(workdir)]


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
            "TF_CPP_MIN_LOG_LEVEL": "2", "SPADE_TF_FLOATX": "float64", **extra}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker_envs() -> list[dict]:
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return [_env(TF_CONFIG=json.dumps({"cluster": cluster,
                                       "task": {"type": "worker", "index": index}}))
            for index in range(2)]


@session_run
def one_steps(workdir, processes):
    """The step on one device, then on 2 replicas and on 2 workers (at once): workdir and
    {"single": CompletedProcess, "mirrored": CompletedProcess, "multi_worker": [2 of them]}."""
    rng = np.random.default_rng(0)
    np.savez(workdir / "batch.npz",
             label=rng.integers(0, 4, (4, 64, 64)).astype(np.int32),
             instance=rng.integers(0, 3, (4, 64, 64)).astype(np.int32),
             image=rng.uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32))
    single = processes.run(_args("single", workdir), TIMEOUT, env=_env())  # initial.npz
    if single.returncode != 0:
        return workdir, {"single": single}
    mirrored = processes.start(_args("mirrored", workdir), env=_env())
    workers = [processes.start(_args("multi_worker", workdir), env=env)
               for env in _worker_envs()]
    return workdir, {"single": single, "mirrored": processes.finish(mirrored, TIMEOUT),
                     "multi_worker": [processes.finish(worker, TIMEOUT) for worker in workers]}


def _assert_finished(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


def _two_workers(workdir) -> None:
    """Both workers again, in the foreground."""
    processes = Processes()
    try:
        started = [processes.start(_args("multi_worker", workdir), env=env)
                   for env in _worker_envs()]
        for process in started:
            _assert_finished(processes.finish(process, TIMEOUT))
    finally:
        processes.close()


def _compare(workdir, mode, name=None):
    single = np.load(workdir / "after_single.npz")
    other = np.load(workdir / f"{name or f'after_{mode}'}.npz")
    initial = np.load(workdir / "initial.npz")
    assert set(single) == set(other)
    moved = max(np.abs(single[k] - initial[k]).max() for k in initial)
    assert moved > 0.1  # the step really changed the weights
    averaged = [k for k in single if k.startswith("generator_ema/")]
    # Decay 0.5 from the first update: half the weights before, half after the step.
    np.testing.assert_allclose(single["generator_ema/fc/kernel"],
                               0.5 * initial["generator/fc/kernel"]
                               + 0.5 * single["generator/fc/kernel"], rtol=1e-12)
    assert len(averaged) > 50 and any("moving_variance" in k for k in averaged)
    # Relative to values above 1: the re-estimated variances are the activations' own
    # (up to ~1.4e3 in this untrained network), not 0.9 + 0.1 of them as after one step.
    worst = max((np.abs(single[k] - other[k]).max() / max(1.0, np.abs(single[k]).max()), k)
                for k in single)
    assert worst[0] < TOLERANCE, worst


def test_two_replicas_equal_one_device(one_steps):
    workdir, results = one_steps
    _assert_finished(results["single"])
    # Exit 3: the replicas' copies of the average differ.
    _assert_finished(results["mirrored"])
    _compare(workdir, "mirrored")


def test_two_workers_on_loopback_equal_one_device(one_steps):
    workdir, results = one_steps
    _assert_finished(results["single"])
    try:
        for result in results["multi_worker"]:
            _assert_finished(result)
    except AssertionError:
        # A port picked as free can be taken before the worker binds it: one retry.
        _two_workers(workdir)
    _compare(workdir, "multi_worker")
    _compare(workdir, "multi_worker", "after_multi_worker_1")  # the other worker's
