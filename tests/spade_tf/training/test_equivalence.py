"""One step on 2 replicas (or 2 workers) equals one step on one device, same global batch."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from support import ROOT

WORKER = ROOT / "tests" / "support" / "one_step_worker.py"
# In float64 the split cannot matter beyond rounding (measured 2e-15); in float32 the
# gradients through SPADE's synchronized batch statistics are only good to ~1e-3 relative
# (TensorFlow's oneDNN kernels; see test_reference_step.py), so the proof runs in float64.
TOLERANCE = 1e-10  # the weights themselves move by up to ~0.6 in this step


def _run(mode: str, workdir, env=None, wait=True):
    full_env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
                "TF_CPP_MIN_LOG_LEVEL": "2", "SPADE_TF_FLOATX": "float64", **(env or {})}
    process = subprocess.Popen([sys.executable, str(WORKER), mode, str(workdir)], env=full_env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        _finish(process)
    return process


def _finish(process, timeout=300):
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def single_step(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one_step")
    rng = np.random.default_rng(0)
    np.savez(workdir / "batch.npz",
             label=rng.integers(0, 4, (4, 64, 64)).astype(np.int32),
             instance=rng.integers(0, 3, (4, 64, 64)).astype(np.int32),
             image=rng.uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32))
    _run("single", workdir)
    return workdir


def _compare(workdir, mode):
    single = np.load(workdir / "after_single.npz")
    other = np.load(workdir / f"after_{mode}.npz")
    initial = np.load(workdir / "initial.npz")
    assert set(single) == set(other)
    moved = max(np.abs(single[k] - initial[k]).max() for k in single)
    assert moved > 0.1  # the step really changed the weights
    worst = max((np.abs(single[k] - other[k]).max(), k) for k in single)
    assert worst[0] < TOLERANCE, worst


def test_two_replicas_equal_one_device(single_step):
    _run("mirrored", single_step)
    _compare(single_step, "mirrored")


def _two_workers(workdir) -> None:
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = [
        _run("multi_worker", workdir, wait=False,
             env={"TF_CONFIG": json.dumps({"cluster": cluster,
                                           "task": {"type": "worker", "index": index}})})
        for index in range(2)
    ]
    try:
        for process in processes:
            _finish(process)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def test_two_workers_on_loopback_equal_one_device(single_step):
    try:
        _two_workers(single_step)
    except AssertionError:
        # A port picked as free can be taken before the worker binds it: one retry.
        _two_workers(single_step)
    _compare(single_step, "multi_worker")
