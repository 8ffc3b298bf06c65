"""Silence TensorFlow's start-up and runtime log noise in the command-line tools.

:func:`spade_cli.app.run` calls :func:`quiet_tensorflow` after parsing, *before* anything
imports ``tensorflow`` or ``keras`` (``SPADE_TF_VERBOSE=1`` keeps every line).

What it does in quiet mode (the default):

1. ``TF_CPP_MIN_LOG_LEVEL=3`` (raised to 3 when unset or lower): hides TF's C++
   INFO/WARNING/ERROR lines, e.g. ``cuda_platform.cc ... failed call to cuInit``,
   ``meta_optimizer.cc ... remapper failed``, ``util.cc ... oneDNN supports DT_INT32``.
   FATAL lines (a crash) still print.  ``TF_ENABLE_ONEDNN_OPTS`` and
   ``CUDA_VISIBLE_DEVICES`` are never touched.
2. ``GRPC_VERBOSITY=ERROR`` (unless already ERROR or NONE): hides grpcio's
   ``fork_posix.cc ... skipping fork() handlers`` INFO lines.
3. Python side: the ``tensorflow`` and ``absl`` loggers go to ERROR, and warnings
   raised from inside tensorflow/keras/absl modules are ignored.  Exceptions are
   untouched, so tracebacks still print.
4. ``import tensorflow`` runs with file descriptor 2 piped through a tiny filter
   process that drops only the lines in :data:`NOISE` and passes everything else
   through unchanged.  Those lines (``WARNING: All log messages before
   absl::InitializeLog() ...``, ``port.cc ... oneDNN custom operations are on``,
   ``cudart_stub.cc ... Could not find cuda drivers``) are printed by static
   initialisers of TF's shared libraries while they are loaded, before any log
   level applies, so no environment variable reaches them.  The filter is a
   separate process, so if the import crashes hard (abort, segfault) it still
   forwards everything that was written, crash message included.  It ignores
   Ctrl-C (SIGINT reaches the whole process group): the command answers it with one
   line, and the filter ends when fd 2 is restored or the command dies.

Verbose mode (``verbose=True`` or ``SPADE_TF_VERBOSE=1``) changes nothing: TF's own
variables (``TF_CPP_MIN_LOG_LEVEL``, ``TF_CPP_VMODULE``, ``GRPC_VERBOSITY`` ...)
apply exactly as the user set them, and every line comes back.
"""

from __future__ import annotations

import _thread
import contextlib
import importlib
import logging
import os
import re
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator

#: Set to 1/true/yes/on to keep TensorFlow's logs (same as ``verbose=True``).
VERBOSE_ENV = "SPADE_TF_VERBOSE"

#: Lines dropped while TensorFlow's shared libraries load.  Each names the source
#: file *and* the message, so a different line from the same file still shows.
NOISE_PATTERNS = (
    # absl's notice, once per library that carries its own copy of absl (TF 2.21: twice).
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    # tsl/platform/cpu_info / port.cc: the oneDNN notice (TF_ENABLE_ONEDNN_OPTS must stay).
    r"^I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\.",
    # CPU-only machines: the CUDA runtime stub finds no driver.
    r"^I\d{4} [\d:.]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
    # Older TF (2.15-2.17) on GPU machines: duplicate plugin registration at import.
    r"^E\d{4} [\d:.]+ +\d+ cuda_(dnn|fft|blas)\.cc:\d+\] "
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"^E\d{4} [\d:.]+ +\d+ computation_placer\.cc:\d+\] computation placer already registered",
    # Only with TF_CPP_MIN_LOG_LEVEL=0 (never in quiet mode); kept for completeness.
    r"^I\d{4} [\d:.]+ +\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate "
    r"compiler flags\.$",
)
NOISE = re.compile("|".join(f"(?:{p})" for p in NOISE_PATTERNS))

#: LiteRT's notice when its interpreter applies the XNNPACK delegate (printed by its C++
#: runtime whatever TF_CPP_MIN_LOG_LEVEL says).
LITERT_NOISE = re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$")

#: Modules whose Python warnings are hidden in quiet mode.
NOISY_MODULES = r"^(tensorflow|keras|tf_keras|absl|tensorboard|google\.protobuf)(\.|$)"

# The filter process: copies stdin to stdout line by line, dropping NOISE lines.
# Runs with -I -S so it starts in ~20 ms and ignores PYTHON* variables.  It starts with
# SIGINT blocked (hold_sigint) and then ignores it: a Ctrl-C is the command's to answer,
# and a KeyboardInterrupt here would print a traceback and drop the command's stderr.
_FILTER_SOURCE = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
def put(data):
    while data:
        try:
            data = data[os.write(1, data):]
        except InterruptedError:
            continue
        except OSError:
            return
try:
    noise = re.compile(sys.argv[1].encode())
    keep = lambda line: not noise.search(line.rstrip(b"\r"))
except Exception:  # fail open: a broken filter must never swallow output
    keep = lambda line: True
pending = b""
while True:
    try:
        chunk = os.read(0, 65536)
    except InterruptedError:
        continue
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\n")
    put(b"".join(line + b"\n" for line in lines if keep(line)))
if pending and keep(pending):
    put(pending)
"""


def verbose_requested(flag: bool | None = None) -> bool:
    """``flag`` if given, else whether ``SPADE_TF_VERBOSE`` is set to a true value."""
    if flag is not None:
        return bool(flag)
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _quiet_environment() -> None:
    """TF's and gRPC's C++ log levels; only ever makes them quieter."""
    try:
        level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        level = 0
    if level < 3:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if os.environ.get("GRPC_VERBOSITY", "").upper() not in ("ERROR", "NONE"):
        os.environ["GRPC_VERBOSITY"] = "ERROR"


def _quiet_python() -> None:
    """TF's and absl's Python loggers to ERROR; warnings from TF/Keras/absl ignored."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # = tf.get_logger()
    logging.getLogger("absl").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    warnings.filterwarnings("ignore", module=NOISY_MODULES)


def hold_sigint() -> set[signal.Signals] | None:
    """Block SIGINT in this thread; returns what :func:`release_sigint` needs.  A Ctrl-C
    that arrives meanwhile waits, and processes started meanwhile inherit the block."""
    try:
        return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask (Windows)
        return None


def release_sigint(held: set[signal.Signals] | None) -> None:
    """Undo :func:`hold_sigint`; a Ctrl-C that waited is raised now (KeyboardInterrupt)."""
    if held is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def redeliver_swallowed_interrupts() -> None:
    """Make a Ctrl-C that Python had to swallow arrive after all (idempotent).

    A KeyboardInterrupt raised while a callback runs that Python cannot raise from (a
    garbage-collector callback, a ``__del__``) is printed as "Exception ignored in ..."
    with a traceback and dropped: the command went on to its end. TensorFlow imports JAX
    where it is installed (tensorflow.lite), and JAX runs a callback at every collection,
    so one Ctrl-C in a dozen was lost so. This ``sys.unraisablehook`` hands such an
    interrupt back to the main thread, where it is raised in the command's own code;
    every other unraisable error goes to the previous hook. From another thread: raised
    from the hook itself (Python code too), it would be swallowed there again; should it
    land in a callback once more, it comes back here and goes round again."""
    if getattr(sys.unraisablehook, "redelivers_interrupts", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type,
                                                          KeyboardInterrupt):
            _thread.start_new_thread(_thread.interrupt_main, ())
        else:
            previous(unraisable)

    hook.redelivers_interrupts = True
    sys.unraisablehook = hook


def _start_filter(noise: re.Pattern[str]) -> tuple[int, subprocess.Popen] | None:
    """Point fd 2 at a new filter process; (the saved fd 2, the filter), or None if
    something needed is missing (nothing changed then)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to filter
        return None
    try:
        read_end, write_end = os.pipe()
    except OSError:
        os.close(saved)
        return None
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER_SOURCE, noise.pattern],
            stdin=read_end, stdout=saved, stderr=saved, close_fds=True)
    except (OSError, ValueError):
        for fd in (read_end, write_end, saved):
            os.close(fd)
        return None
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)  # fd 2 is now the only write end: EOF reaches the child on restore
    return saved, child


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern[str] = NOISE) -> Iterator[None]:
    """Within the block, lines written to fd 2 (by C, C++ or Python) that match
    ``noise`` are dropped; all others reach the real stderr unchanged.

    Lines are forwarded as they complete.  On exit the filter is drained before the
    block's caller continues, so ordering with later stderr output is kept.  If the
    process dies inside the block, the filter still forwards what it received.
    If anything needed is missing (no fd 2, no interpreter path), the block runs
    unfiltered.  Ctrl-C raises KeyboardInterrupt here as anywhere (never half-way
    through the set-up); the filter ignores it.
    """
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    held = hold_sigint()  # the filter starts with SIGINT blocked, and fd 2 moves whole
    try:
        started = _start_filter(noise)
    except BaseException:
        release_sigint(held)
        raise
    if started is None:
        release_sigint(held)
        yield
        return
    saved, child = started
    try:
        release_sigint(held)  # a Ctrl-C pressed during the set-up surfaces here
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:  # someone else kept the pipe open (a daemon)
            pass


@contextlib.contextmanager
def quiet_litert(verbose: bool | None = None) -> Iterator[None]:
    """Within the block, LiteRT's delegate notice (:data:`LITERT_NOISE`) is dropped from
    stderr unless ``verbose``; create the interpreter (and allocate its tensors) in it."""
    if verbose_requested(verbose):
        yield
        return
    with filtered_stderr(LITERT_NOISE):
        yield


def quiet_tensorflow(verbose: bool | None = None, *, import_tensorflow: bool = True):
    """Silence TensorFlow's C++ and Python log noise unless ``verbose``.

    Call before anything imports tensorflow or keras (environment variables are
    read when TF's libraries load).  ``verbose=None`` reads ``SPADE_TF_VERBOSE``.
    With ``import_tensorflow`` (the default) TF is imported here, inside the stderr
    filter, and the module is returned; otherwise only the environment and Python
    settings are applied (the load-time lines listed in NOISE will then show).
    Real errors are never hidden: Python exceptions propagate unchanged and
    anything on stderr that is not a known noise line passes through.
    """
    if verbose_requested(verbose):
        return importlib.import_module("tensorflow") if import_tensorflow else None
    _quiet_environment()
    _quiet_python()
    if not import_tensorflow:
        return None
    if "tensorflow" in sys.modules:  # too late for the load-time lines
        return sys.modules["tensorflow"]
    with filtered_stderr():
        tf = importlib.import_module("tensorflow")
    return tf
