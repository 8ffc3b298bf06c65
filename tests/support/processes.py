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


def command_args(tool: str, *args: object) -> list[str]:
    """The argument vector of a console script (``spade-train`` ...) as a user runs it:
    ``python -m spade_cli.<module>``, the module the installed script calls, so the tests
    need no installed entry points."""
    return [sys.executable, "-m", "spade_cli." + COMMAND_MODULES[tool], *map(str, args)]


def run_command(tool: str, *args: object, timeout: float = 300, cwd=None,
                **env: str) -> subprocess.CompletedProcess:
    """Run a console script (``spade-train`` ...) as a user would; stdout/stderr as text."""
    return subprocess.run(command_args(tool, *args), capture_output=True, text=True,
                          timeout=timeout, env=command_env(**env), cwd=cwd or ROOT,
                          stdin=subprocess.DEVNULL)


def run_commands(*commands: tuple, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Run several console scripts at once, each ``(tool, *args)`` as ``run_command`` runs
    it: their start-ups (TensorFlow's import, several seconds each) overlap on two cores."""
    processes = [start_command(*command) for command in commands]

    def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
        stdout, stderr = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    try:
        return [finish(process) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


def start_command(tool: str, *args: object, cwd=None, **env: str) -> subprocess.Popen:
    """Start a console script (for Ctrl-C and server tests); stdout/stderr are pipes."""
    return subprocess.Popen(command_args(tool, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=command_env(**env),
                            cwd=cwd or ROOT, stdin=subprocess.DEVNULL)


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
