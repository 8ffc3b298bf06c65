"""Helpers the benchmark scripts share: progress lines, timing, memory, machine, tables.

Not a benchmark itself. Every script prints progress to stderr and its figures to
stdout, and can save the figures with ``--json OUT`` (see :func:`add_json_argument`).
Heavy variants run in fresh subprocesses (:func:`run_worker`) so that each one's
peak memory is its own: TensorFlow on a CPU has no allocator statistics, so memory is
the process's resident set size, read from ``/proc/self/status``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_START = time.perf_counter()


# -- output ---------------------------------------------------------------------------


def progress(message: str) -> None:
    """A progress line on stderr (stdout is kept for the figures)."""
    print(f"[{time.perf_counter() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


def script_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark script's parser: its docstring's first line as the description, the rest
    (usage lines and notes) as the epilog, line breaks kept."""
    return argparse.ArgumentParser(description=doc.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="\n".join(doc.splitlines()[2:]))


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", type=Path, default=None,
                        help="also write the figures to this JSON file")


def write_json(path: Path | None, figures: dict) -> None:
    """Write ``figures`` to ``path`` (when given), creating its folder."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=False) + "\n")
    progress(f"figures written to {path}")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                 align: str | None = None) -> str:
    """A plain-text table; ``align`` has an "l" or "r" per column (default "lrrr...")."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return " | ".join(cell.ljust(width) if side == "l" else cell.rjust(width)
                          for cell, width, side in zip(row, widths, align, strict=True)).rstrip()

    rule = "-+-".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def run_script(main: Callable[[], object]) -> None:
    """Run a benchmark's ``main``; Ctrl-C ends in one line and exit status 130, a mistake
    the library names (a missing model folder, a map of the wrong size) in one line and 2,
    not a traceback (figures are written only at the end: nothing half-written is left)."""
    from spade_tf.errors import SpadeError

    name = Path(sys.argv[0]).name
    try:
        main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted; no figures written", file=sys.stderr)
        sys.exit(130)
    except SpadeError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(error.exit_status)


# -- timing ---------------------------------------------------------------------------


def _busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used (from /proc/stat)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal: everything but idle and iowait.
    ticks = [int(value) for value in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


class BackgroundLoad:
    """How many cores other processes kept busy during a ``with`` block.

    The machine's busy CPU time (/proc/stat) minus this process's own, per second of
    wall time: 0 on a quiet machine, about 1 when another job takes a whole core, in
    which case timings of a multi-threaded computation are worth little.
    """

    def __init__(self) -> None:
        self.cores: float | None = None

    def __enter__(self) -> BackgroundLoad:
        times = os.times()
        self._start = (time.perf_counter(), _busy_seconds(), times.user + times.system)
        return self

    def __exit__(self, *exc_info) -> None:
        wall, busy, own = self._start
        times = os.times()
        now_busy = _busy_seconds()
        elapsed = time.perf_counter() - wall
        if busy is not None and now_busy is not None and elapsed > 0:
            other = (now_busy - busy) - (times.user + times.system - own)
            self.cores = max(0.0, other / elapsed)


# A call during which other processes kept fewer cores busy than this counts as quiet;
# medians use the quiet calls when there are at least MIN_QUIET_CALLS of them.
QUIET_CORES = 0.25
MIN_QUIET_CALLS = 3
# Seconds a row may wait, in all, for a quiet machine before its timed calls.
DEFAULT_QUIET_WAIT_S = 60.0
QUICK_QUIET_WAIT_S = 10.0


def add_timing_arguments(parser: argparse.ArgumentParser, unit: str, crop_help: str,
                         quick_help: str) -> None:
    """``--warmup``, ``--crop-size``, ``--quick`` and ``--quiet-wait`` of the timed
    benchmarks; ``unit`` names what is timed ("call", "step")."""
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed {unit}s before timing (2; 1 with --quick)")
    parser.add_argument("--crop-size", type=int, default=None, help=crop_help)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="seconds each row may spend, in all, waiting before its timed "
                             f"{unit}s for other processes to leave the CPU "
                             f"({DEFAULT_QUIET_WAIT_S:g}; {QUICK_QUIET_WAIT_S:g} with --quick; "
                             "0: never wait)")


def resolve_timing_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                             unit: str) -> None:
    """Fill the defaults ``add_timing_arguments`` leaves open (they depend on --quick)."""
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.quiet_wait is None:
        args.quiet_wait = QUICK_QUIET_WAIT_S if args.quick else DEFAULT_QUIET_WAIT_S
    args.crop_size = args.crop_size or (128 if args.quick else 256)
    if args.warmup < 1:
        parser.error(f"--warmup must be at least 1 (the first {unit} is reported separately)")


def median_of_quiet(times_ms: Sequence[float], loads: Sequence[float | None]) -> dict:
    """The median over quiet calls when there are enough of them, else over all calls.

    On a shared machine another job taking a core roughly doubles the time of a
    2-thread computation for as long as it runs; the median of all calls then depends
    on how many calls it overlapped. Quiet calls count when there are at least
    MIN_QUIET_CALLS of them (or all calls are quiet). Returns ``{"median_ms",
    "quiet_calls", "of_quiet"}``.
    """
    quiet = [t for t, load in zip(times_ms, loads, strict=True)
             if load is not None and load < QUIET_CORES]
    use_quiet = len(quiet) >= min(MIN_QUIET_CALLS, len(times_ms))
    return {"median_ms": statistics.median(quiet if use_quiet else times_ms),
            "quiet_calls": len(quiet), "of_quiet": use_quiet}


@dataclasses.dataclass
class Timing:
    """Seconds of the first call (tracing, compilation, thread pools) and timed calls.

    ``loads`` holds, per timed call, the cores other processes kept busy meanwhile
    (:class:`BackgroundLoad`).
    """

    first_s: float | None
    times_s: list[float]
    loads: list[float | None]

    @property
    def times_ms(self) -> list[float]:
        return [t * 1000.0 for t in self.times_s]

    @property
    def median_ms(self) -> float:
        """Median of the quiet calls (see :func:`median_of_quiet`)."""
        return median_of_quiet(self.times_ms, self.loads)["median_ms"]

    def as_dict(self) -> dict:
        known = [load for load in self.loads if load is not None]
        return {"first_call_s": self.first_s,
                **median_of_quiet(self.times_ms, self.loads),
                "median_all_ms": statistics.median(self.times_ms),
                "min_ms": min(self.times_ms), "max_ms": max(self.times_ms),
                "times_ms": self.times_ms, "background_loads": self.loads,
                "background_load_cores": statistics.mean(known) if known else None}


def wait_until_quiet(budget_s: float, window_s: float = 0.5) -> float:
    """Sleep until other processes keep < QUIET_CORES busy for a window, or ``budget_s``
    is spent; returns the seconds waited (one window on a quiet machine)."""
    waited = 0.0
    while waited < budget_s:
        with BackgroundLoad() as load:
            time.sleep(window_s)
        waited += window_s
        if load.cores is None or load.cores < QUIET_CORES:
            break
    return waited


def time_calls(call: Callable[[], object], repeats: int, warmup: int = 1,
               label: str = "", between: Callable[[], None] | None = None,
               quiet_wait_s: float = 0.0) -> Timing:
    """Time ``repeats`` calls of ``call`` after ``warmup`` untimed ones.

    ``call`` must return only when its work is done (fetch the result to host memory).
    ``between`` runs after the warm-up, before the timed calls (e.g. to reset peak RSS).
    ``quiet_wait_s``: seconds in all that may be spent, before timed calls, waiting for
    other processes to leave the CPU (see :func:`wait_until_quiet`); 0 does not wait.
    """
    first = None
    for index in range(warmup):
        start = time.perf_counter()
        call()
        if index == 0:
            first = time.perf_counter() - start
            progress(f"{label}first call {first:.2f} s")
    if between is not None:
        between()
    times, loads = [], []
    for index in range(repeats):
        if quiet_wait_s > 0:
            quiet_wait_s -= wait_until_quiet(quiet_wait_s)
        with BackgroundLoad() as load:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        loads.append(load.cores)
        busy = "" if load.cores is None else f" (other processes: {load.cores:.2f} cores)"
        progress(f"{label}call {index + 1}/{repeats}: {times[-1] * 1000:.0f} ms{busy}")
    return Timing(first, times, loads)


# -- memory ---------------------------------------------------------------------------


def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def rss_mib() -> float | None:
    """The current resident set size (VmRSS)."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """Peak RSS of this process since it started or the last :func:`reset_peak_rss`.

    VmHWM from /proc/self/status; ``ru_maxrss`` only where that is missing, because
    ``ru_maxrss`` also keeps the peak of the process image replaced by ``exec``: a
    worker started by ``subprocess`` from a parent holding 2 GiB reports at least 2 GiB.
    """
    peak = _status_mib("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    return peak


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count from the current RSS (Linux >= 4.0); False if unsupported.

    Writing 5 to /proc/self/clear_refs resets VmHWM: without it a peak during model
    loading would hide the peak of inference.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class MemoryTracker:
    """Peak RSS per phase of one process: ``mark("built")`` ends a phase, starts the next.

    ``phases[name]`` holds the RSS at the mark and the peak RSS during the phase; the
    lifetime peak is kept across resets.
    """

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float | None]] = {}
        self.lifetime_peak_mib = peak_rss_mib()
        self.resettable = True

    def mark(self, name: str) -> None:
        peak = peak_rss_mib()
        self.lifetime_peak_mib = max(self.lifetime_peak_mib, peak)
        self.phases[name] = {"rss_mib": rss_mib(), "phase_peak_mib": peak}
        self.resettable = reset_peak_rss() and self.resettable

    def as_dict(self) -> dict:
        return {"phases": self.phases, "peak_rss_mib": self.lifetime_peak_mib,
                "peak_reset_supported": self.resettable}


# -- machine --------------------------------------------------------------------------


def _cpu_info() -> tuple[str, set[str]]:
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("unknown CPU", "x86_64", ""):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """What the figures were measured on (without importing the frameworks)."""
    model, flags = _cpu_info()
    interesting = sorted(f for f in flags if "bf16" in f or f.startswith("amx")
                         or f in ("avx512f", "avx512_vnni", "avx2", "fma"))
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_flags": interesting,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "tensorflow": _version("tensorflow") or _version("tensorflow-cpu"),
        "keras": _version("keras"),
        "torch": _version("torch"),
        "env": {key: os.environ[key] for key in ("OMP_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS",
                                                 "TF_NUM_INTRAOP_THREADS", "TF_XLA_FLAGS")
                if key in os.environ},
    }


def machine_line(info: dict | None = None) -> str:
    """One line: CPU, cores, bf16/AMX flags, versions, load average at start."""
    info = info or machine()
    versions = ", ".join(f"{name} {info[name]}" for name in ("tensorflow", "keras", "torch")
                         if info.get(name))
    flags = " ".join(info["cpu_flags"]) or "none"
    # The bf16 paths differ most between CPUs with and without AMX tiles: say which.
    flags += "" if any(flag.startswith("amx") for flag in info["cpu_flags"]) else " (no AMX)"
    env = "".join(f", {key}={value}" for key, value in info["env"].items())
    load = f"1-min load average at start {info['load_average_1m']}"
    if "load_average_1m_at_end" in info:
        load += f", at end {info['load_average_1m_at_end']}"
    return (f"machine: {info['cpu']}, {info['usable_cores']} cores ({info['cpu_count']} CPUs), "
            f"{info['memory_gib']} GiB; flags: {flags}; {versions}; Python {info['python']}; "
            f"{load}{env}")


# -- subprocesses ---------------------------------------------------------------------


def run_worker(argv: Sequence[str], timeout: float | None = None) -> dict:
    """Run ``python argv...`` in a fresh process; its last stdout line is a JSON dict.

    The worker's stderr (its progress lines) goes straight to ours.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    done = subprocess.run([sys.executable, *map(str, argv)], stdout=subprocess.PIPE,
                          text=True, timeout=timeout, env=env, cwd=REPO_ROOT)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        tail = "\n".join(lines[-10:])
        raise RuntimeError(f"worker {' '.join(map(str, argv))} failed with exit code "
                           f"{done.returncode}; its last output:\n{tail}")
    return json.loads(lines[-1])


def emit_worker_result(result: dict) -> None:
    """A worker's answer to :func:`run_worker`: one JSON line on stdout."""
    print(json.dumps(result), flush=True)
