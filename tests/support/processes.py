"""Run test code and console scripts in fresh processes (TF device set-up happens once
per process)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

from spade_cli.commands import COMMANDS, command_module
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
    return [sys.executable, "-m", command_module(tool), *map(str, args)]


def run_command(tool: str, *args: object, timeout: float = 300, cwd=None,
                **env: str) -> subprocess.CompletedProcess:
    """Run a console script (``spade-train`` ...) as a user would; stdout/stderr as text."""
    return subprocess.run(command_args(tool, *args), capture_output=True, text=True,
                          timeout=timeout, env=command_env(**env), cwd=cwd or ROOT,
                          stdin=subprocess.DEVNULL)


def run_commands(*commands: tuple, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Run several console scripts at once, each ``(tool, *args)`` as ``run_command`` runs
    it: their start-ups (TensorFlow's import, several seconds each) overlap on two cores."""
    processes = Processes()
    try:
        started = [processes.start_command(*command) for command in commands]
        return [processes.finish(process, timeout) for process in started]
    finally:
        processes.close()


def start_command(tool: str, *args: object, cwd=None, **env: str) -> subprocess.Popen:
    """Start a console script (for Ctrl-C and server tests); stdout/stderr are pipes."""
    return subprocess.Popen(command_args(tool, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=command_env(**env),
                            cwd=cwd or ROOT, stdin=subprocess.DEVNULL)


class Processes:
    """Starts processes, each in a session of its own so that its children can be stopped
    with it (a process that outlives its timeout is killed whole), and kills those still
    running on ``close`` (what a run of support/runs.py leaves running)."""

    def __init__(self):
        self._started: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._closed = False

    def start(self, args: list[str], **popen) -> subprocess.Popen:
        """A started process: stdout and stderr are pipes (text), stdin is empty."""
        with self._lock:
            if self._closed:
                raise RuntimeError("these processes are closed: start no more")
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL, text=True,
                                       start_new_session=True, **popen)
            self._started.append(process)
        return process

    def finish(self, process: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
        """Wait for ``process``; killed (its children too) and an error past ``timeout``."""
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(process)
            stdout, stderr = process.communicate()
            raise RuntimeError(f"{process.args} did not finish within {timeout} s:\n"
                               f"{stdout[-3000:]}{stderr[-3000:]}") from None
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def run(self, args: list[str], timeout: float, **popen) -> subprocess.CompletedProcess:
        return self.finish(self.start(args, **popen), timeout)

    def start_command(self, tool: str, *args: object) -> subprocess.Popen:
        """Start a console script as ``run_command`` runs it."""
        return self.start(command_args(tool, *args), env=command_env(), cwd=ROOT)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for process in self._started:
                if process.poll() is None:
                    self.kill(process)


# Each console script's module in spade_cli ("spade-eval" -> "evaluate"), from its table.
COMMAND_MODULES = {name: command_module(name).removeprefix("spade_cli.") for name in COMMANDS}


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
