"""Run test code in a fresh Python process (TF device set-up happens once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from support import ROOT

LOGICAL_CPUS = """
import tensorflow as tf
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration()] * {count})
"""


def run_python(code: str, logical_cpus: int = 0, timeout: float = 300,
               env: dict | None = None) -> dict:
    """Run ``code`` and return the JSON object it prints on its last stdout line.

    With ``logical_cpus``, the process's CPU is split into that many logical devices
    before anything else touches TensorFlow.
    """
    prelude = LOGICAL_CPUS.format(count=logical_cpus) if logical_cpus else ""
    script = "import os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'\n" + prelude + \
        textwrap.dedent(code)
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
                **(env or {})}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=timeout, env=full_env, cwd=ROOT)
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def command_env(**extra: str) -> dict:
    """The environment a console script runs in here: the project importable, no TF logs."""
    env = {key: value for key, value in os.environ.items() if key != "SPADE_TF_VERBOSE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def run_command(tool: str, *args: object, timeout: float = 300, cwd=None,
                **env: str) -> subprocess.CompletedProcess:
    """Run a console script (``spade-train`` ...) as a user would; stdout/stderr as text.

    Runs ``python -m spade_cli.<module>``, the module the installed script calls, so the
    tests need no installed entry points.
    """
    module = "spade_cli." + COMMAND_MODULES[tool]
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=command_env(**env), cwd=cwd or ROOT,
                          stdin=subprocess.DEVNULL)


def start_command(tool: str, *args: object, cwd=None, **env: str) -> subprocess.Popen:
    """Start a console script (for Ctrl-C and server tests); stdout/stderr are pipes."""
    module = "spade_cli." + COMMAND_MODULES[tool]
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=command_env(**env), cwd=cwd or ROOT, stdin=subprocess.DEVNULL)


COMMAND_MODULES = {
    "spade-tfrecords": "tfrecords",
    "spade-train": "train",
    "spade-convert-torch": "convert_torch",
    "spade-export": "export",
    "spade-eval": "evaluate",
    "spade-serve": "serve",
    "spade-synthesize": "synthesize",
}


def assert_one_line_error(result: subprocess.CompletedProcess, prog: str, *words: str,
                          status: int = 2) -> str:
    """Exit ``status``, stderr ends with one ``prog: error: ...`` line holding ``words``, no
    traceback anywhere; returns that line."""
    assert result.returncode == status, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{prog}: "), result.stderr[-3000:]
    for word in words:
        assert word in line, (word, line)
    return line
