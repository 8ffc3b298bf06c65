"""TensorFlow's log noise: quiet by default, verbose on request, real errors always visible.

Each check runs in a fresh interpreter (the settings only work before TF loads); the
checks of one setting share one (TensorFlow's start-up takes seconds).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from support import ROOT
from support.processes import Processes, command_args, command_env
from support.runs import session_run

from spade_cli import quiet

# A small workload that used to print every catalogued line on a CPU machine:
# import, device listing (cuInit), a conv in a tf.function, a Keras fit, a
# SavedModel save + load + call, a gRPC server, TF's and absl's Python loggers.
WORKLOAD = """
import os, sys, tempfile
sys.path.insert(0, {here!r})
from spade_cli import quiet
tf = quiet.quiet_tensorflow(verbose={verbose})
import keras
tf.config.list_physical_devices()

@tf.function
def conv(x, w, b):
    return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b))

x = tf.random.normal((2, 8, 8, 3))
conv(x, tf.random.normal((3, 3, 3, 4)), tf.zeros(4))

inputs = keras.Input((8, 8, 3))
model = keras.Model(inputs, keras.layers.Conv2D(4, 3, activation="relu")(inputs))
model.compile("sgd", "mse")
model.fit(x, tf.zeros((2, 6, 6, 4)), epochs=1, verbose=0)

class Module(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.random.normal((3, 3, 3, 4)))

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3])])
    def __call__(self, images):
        return tf.nn.relu(tf.nn.conv2d(images, self.w, 1, "SAME"))

path = tempfile.mkdtemp()
tf.saved_model.save(Module(), path)
loaded = tf.saved_model.load(path)
print(float(tf.reduce_sum(loaded(x))) >= 0)

import grpc
from concurrent import futures
server = grpc.server(futures.ThreadPoolExecutor(1))
server.add_insecure_port("127.0.0.1:0")
server.start()
server.stop(0)

tf.get_logger().warning("a tf logger warning")
from absl import logging as absl_logging
absl_logging.warning("an absl warning")
print("finished")
"""

TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\]")


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", quiet.VERBOSE_ENV)}
    environment.update(env or {})
    return environment


def run(source: str, env: dict[str, str] | None = None, timeout: int = 300):
    """Run ``source`` in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source)],
                          env=_environment(env), capture_output=True, text=True, timeout=timeout)


def workload(verbose: object) -> str:
    return WORKLOAD.format(here=str(ROOT), verbose=verbose)


# After the workload, quiet by default: the project's own warning, then an error of a C++
# kernel, whose traceback ends the process (status 1).
WARNING_AND_TRACEBACK = """
import warnings
warnings.warn("the project's own warning")
tf.reshape(tf.zeros([2, 3]), [4, 4])   # InvalidArgumentError from a C++ kernel
"""
WARNING_LINE = re.compile(r"<string>:\d+: UserWarning: the project's own warning\n")


@session_run
def tensorflow_runs(folder, processes):
    """The runs that start TensorFlow (several seconds each): {name: CompletedProcess}.
    "quiet" runs without TF_CPP_MIN_LOG_LEVEL (TensorFlow's loudest default)."""
    runs = {"quiet": (workload(None) + WARNING_AND_TRACEBACK, None),
            "verbose": (workload(None), {quiet.VERBOSE_ENV: "1"})}
    return {name: processes.run([sys.executable, "-c", textwrap.dedent(source)], 300,
                                env=_environment(env))
            for name, (source, env) in runs.items()}


def test_quiet_by_default_stderr_is_empty(tensorflow_runs):
    result = tensorflow_runs["quiet"]
    assert result.returncode == 1, result.stderr  # the traceback at the end, on purpose
    assert result.stdout.split() == ["True", "finished"]
    # Nothing but what the program itself wrote: the warning, then the traceback.
    before, traceback = result.stderr.split("Traceback (most recent call last):\n")
    assert WARNING_LINE.fullmatch(before), result.stderr
    assert not [line for line in traceback.splitlines()
                if TF_LOG_LINE.match(line) or "absl" in line], result.stderr


def test_environment_variable_brings_the_lines_back(tensorflow_runs):
    result = tensorflow_runs["verbose"]
    assert result.returncode == 0, result.stderr
    assert "WARNING: All log messages before absl::InitializeLog()" in result.stderr
    assert "oneDNN custom operations are on" in result.stderr
    assert any(TF_LOG_LINE.match(line) for line in result.stderr.splitlines())
    assert "a tf logger warning" in result.stderr
    assert "an absl warning" in result.stderr


def test_python_exception_traceback_still_shows(tensorflow_runs):
    result = tensorflow_runs["quiet"]
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "InvalidArgumentError" in result.stderr
    assert "Input to reshape is a tensor with 6 values" in result.stderr
    assert "absl::InitializeLog" not in result.stderr


def test_user_warnings_are_not_hidden(tensorflow_runs):
    result = tensorflow_runs["quiet"]
    assert "UserWarning: the project's own warning" in result.stderr, result.stderr
    assert "oneDNN" not in result.stderr


# The fd filter alone (no TensorFlow): fast, and covers the failure cases.

def test_filter_drops_only_noise_lines_and_keeps_order():
    noise = ("WARNING: All log messages before absl::InitializeLog() is called are written "
             "to STDERR\\n")
    result = run(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from spade_cli.quiet import filtered_stderr
        os.write(2, b"before\\n")
        with filtered_stderr():
            os.write(2, b"{noise}")
            os.write(2, b"E0000 00:00:1.2 7 port.cc:1] some other port.cc problem\\n")
            print("from python", file=sys.stderr)
            os.write(2, b"no newline at the end")
        os.write(2, b"\\nafter\\n")
    """)
    assert result.stderr == ("before\nE0000 00:00:1.2 7 port.cc:1] some other port.cc problem\n"
                             "from python\nno newline at the end\nafter\n")


def test_filter_forwards_a_crash_message_when_the_process_aborts_inside():
    result = run(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from spade_cli.quiet import filtered_stderr
        with filtered_stderr():
            os.write(2, b"F0000 00:00:1.2 7 something.cc:1] Check failed: a crash\\n")
            os.abort()
    """)
    assert result.returncode != 0
    assert "Check failed: a crash" in result.stderr


def test_filter_passes_import_error_through():
    result = run(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from spade_cli.quiet import filtered_stderr
        with filtered_stderr():
            import module_that_does_not_exist
    """)
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'module_that_does_not_exist'" in result.stderr


def test_quiet_never_makes_things_louder(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    monkeypatch.setenv("GRPC_VERBOSITY", "NONE")
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    quiet._quiet_environment()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert os.environ["GRPC_VERBOSITY"] == "NONE"


@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_verbose_requested(monkeypatch, value, expected):
    monkeypatch.setenv(quiet.VERBOSE_ENV, value)
    assert quiet.verbose_requested() is expected
    assert quiet.verbose_requested(True) is True
    assert quiet.verbose_requested(False) is False


# Ctrl-C at any moment of a command's start-up: one line, exit 130, never a traceback.

def _importing_the_commands_modules(pid: int) -> bool:
    """Whether ``pid`` has started importing spade_tf.config (after spade_cli.app, before
    parsing): it maps the C parts of the modules that imports (yaml, datetime)."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            return any("/_yaml." in line or "/_datetime." in line for line in maps)
    except OSError:
        return False


def _filter_running(pid: int) -> bool:
    """Whether ``pid`` has a stderr filter child (alive only while TensorFlow imports)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                arguments = cmdline.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and arguments[1:4] == [b"-I", b"-S", b"-c"]:
            return True
    return False


def _interrupt(tool: str, args: list[object], moment: str) -> subprocess.CompletedProcess:
    """Start ``tool`` in a process group of its own, send SIGINT to the whole group (as
    Ctrl-C in a terminal does) at ``moment``; the finished process."""
    processes = Processes()
    # An ignored SIGINT (a suite started with `&` or nohup) would be inherited: reset it.
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL) if ignored else None
    try:
        process = processes.start(command_args(tool, *args), env=command_env(), cwd=ROOT)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.monotonic() + 60
        if moment == "start-up":  # while the command's modules import, before run()
            while not _importing_the_commands_modules(process.pid) \
                    and not _filter_running(process.pid) and process.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.001)
        else:  # while TensorFlow imports, behind the stderr filter
            while not _filter_running(process.pid):
                assert process.poll() is None and time.monotonic() < deadline, moment
                time.sleep(0.005)
            time.sleep({"import begins": 0.0, "import half-way": 0.3}[moment])
            assert _filter_running(process.pid), "TensorFlow imported before the signal"
        os.killpg(process.pid, signal.SIGINT)
        return processes.finish(process, 60)
    finally:
        processes.close()


@pytest.mark.parametrize("tool, moment", [
    ("spade-export", "start-up"),
    ("spade-export", "import begins"),
    ("spade-export", "import half-way"),
    ("spade-train", "import begins"),
])
def test_ctrl_c_during_start_up_is_one_line_and_130(tmp_path, tool, moment):
    args = {"spade-export": ["--model-dir", tmp_path / "run", "--export-base", tmp_path / "x"],
            "spade-train": ["--config", ROOT / "configs" / "demo.yaml", "--data", tmp_path,
                            "--model-dir", tmp_path / "run"]}[tool]
    result = _interrupt(tool, args, moment)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr == f"{tool}: interrupted\n"
    assert result.returncode == 130
