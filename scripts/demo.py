"""The demo behind `make demo`: the whole pipeline on a CPU with no data and no downloads.

Stages, each the project's own command line run as a user would run it:
synthetic scenes (spade-tfrecords synthetic) -> TFRecords (spade-tfrecords convert) ->
multi-replica training under MirroredStrategy (spade-train; two logical CPU replicas
without a GPU, every GPU otherwise) -> SavedModel (spade-export) -> gRPC server on
loopback (spade-serve) -> held-out label maps synthesized over gRPC by spade-synthesize,
which also writes ``demo.png`` (label map in the classes' colours | generated image per
row) -> the synthetic mIoU, read back from the generated colours. The server is stopped
at the end, also when a stage fails; a failure names its stage and exits non-zero. It
ends by printing the commands for your own label maps and for painting (``make paint``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's packages, also when it is not installed

from spade_cli.commands import command_module  # noqa: E402
from spade_cli.quiet import quiet_tensorflow  # noqa: E402
from spade_tf.atomic import write_text  # noqa: E402

# Subprocesses find the project even when it is not installed (python scripts/demo.py).
ENVIRONMENT = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
SERVER_START_SECONDS = 180
MARKER = ".spade-demo"  # marks a folder this script may clear


class StageFailure(RuntimeError):
    """A stage could not finish; the message says why."""


@contextlib.contextmanager
def stage(name: str, timings: dict[str, float]):
    """Print a stage header and its time; a failure inside names the stage and exits 1."""
    print(f"\n[demo] == {name} ==", flush=True)
    start = time.perf_counter()
    try:
        yield
    except (Exception, KeyboardInterrupt) as error:
        print(f"[demo] FAILED at stage '{name}': {type(error).__name__}: {error}",
              file=sys.stderr, flush=True)
        raise SystemExit(1) from error
    timings[name] = time.perf_counter() - start
    print(f"[demo] {name}: done in {timings[name]:.1f}s", flush=True)


def command_line(tool: str, *args: object) -> list[str]:
    """``tool args`` as the argument vector that runs it with this interpreter."""
    print(f"[demo] $ {tool} {shlex.join(str(arg) for arg in args)}", flush=True)
    # Run as modules (spade_cli.commands' table) so the demo works without them on PATH.
    return [sys.executable, "-m", command_module(tool), *map(str, args)]


def start_tool(tool: str, *args: object, **popen) -> subprocess.Popen:
    """Start one of the project's commands; its stderr is shown as it is (the commands
    keep TensorFlow's own log lines to themselves)."""
    return subprocess.Popen(command_line(tool, *args), env=ENVIRONMENT, cwd=ROOT, text=True,
                            **popen)


def stop(process: subprocess.Popen) -> None:
    """Terminate a child (SIGTERM, then SIGKILL after 30 s) unless it has exited."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_tool(tool: str, *args: object) -> None:
    """Run one of the project's commands with its output shown; raise if it fails."""
    process = start_tool(tool, *args)
    try:
        status = process.wait()
    finally:
        stop(process)  # interrupted: leave no child behind
    if status != 0:
        raise StageFailure(f"{tool} exited with status {status} (output above)")


def request_times(address: str, model_name: str, held_out: Path) -> list[float]:
    """Seconds per single-map gRPC request, each held-out map once (the interactive path)."""
    quiet_tensorflow()  # the client's protos import TensorFlow: as quietly as the commands
    from serving.client import SpadeClient
    from spade_tf.evaluation.images import read_label_map

    times = []
    with SpadeClient(address, model_name, timeout=120.0) as client:
        for path in sorted((held_out / "labels").glob("*.png")):
            labels = read_label_map(path)
            instances = read_label_map(held_out / "instances" / path.name)
            begin = time.perf_counter()
            client.synthesize(labels, instances)
            times.append(time.perf_counter() - begin)
    return times


def count_gpus() -> int:
    """GPUs TensorFlow sees, asked in a child process (TF start-up is noisy and slow)."""
    probe = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    result = subprocess.run([sys.executable, "-c", probe], env=ENVIRONMENT,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise StageFailure(f"TensorFlow does not start: {result.stderr.strip()[-2000:]}")
    return int(result.stdout.split()[-1])


@contextlib.contextmanager
def running_server(export_base: Path, model_name: str):
    """Start spade-serve on a free loopback port; yield its address; always stop it."""
    process = start_tool("spade-serve", "--model-base-path", export_base / model_name,
                         "--model-name", model_name, "--port", 0, "--poll-seconds", 0,
                         stdout=subprocess.PIPE)
    try:
        address = _wait_for_address(process)
        yield address
    finally:
        stop(process)
        print("[demo] spade-serve stopped", flush=True)


def _wait_for_address(process: subprocess.Popen) -> str:
    """The address spade-serve prints once listening; its stdout is read by a thread so
    that a server hanging silently still meets the deadline."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + SERVER_START_SECONDS
    prefix = "spade-serve: listening on "
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            raise StageFailure(f"spade-serve exited with status {process.wait()} before "
                               "listening (output above)")
        print(line.rstrip(), flush=True)
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise StageFailure(f"spade-serve did not listen within {SERVER_START_SECONDS}s")


def read_scenes(folder: Path, names: list[str]):
    """Label maps and photos of a synthetic scene folder."""
    from spade_tf.evaluation.images import read_image, read_label_map

    return ([read_label_map(folder / "labels" / name) for name in names],
            [read_image(folder / "images" / name) for name in names])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output", help="working folder (demo_output)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--scenes", type=int, default=256, help="training scenes (256)")
    parser.add_argument("--held-out", type=int, default=8, help="held-out scenes (8)")
    parser.add_argument("--size", type=int, default=64,
                        help="scene side in pixels, a multiple of 32 (64)")
    parser.add_argument("--epochs", type=int, default=24, help="training epochs (24)")
    parser.add_argument("--cpu-replicas", type=int, default=2,
                        help="logical CPU replicas when there is no GPU (2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.scenes, args.held_out, args.epochs, args.cpu_replicas) < 1:
        parser.error("--scenes, --held-out, --epochs and --cpu-replicas must be positive")
    from spade_tf.config import ConfigError, load_config

    try:  # a size the model cannot take fails now, not after the data is written
        load_config(args.config, [f"data.load_size={args.size}", f"model.crop_size={args.size}"])
    except (ConfigError, OSError) as error:
        parser.error(f"--config {args.config} with --size {args.size}: {error}")
    return args


def prepare_output(out: Path) -> None:
    """Create ``out``, or clear a previous demo's results from it; refuse other folders."""
    if out.exists() and not out.is_dir():
        raise StageFailure(f"{out} is a file; choose a folder for --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise StageFailure(f"{out} is not empty and was not written by the demo; choose "
                           "another --out (the demo clears its folder on every run)")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    for name in ("scenes", "records", "run", "exports", "synthesized"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("demo.png", "summary.json"):
        (out / name).unlink(missing_ok=True)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # runs the finally blocks that stop the children


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    out = Path(args.out).resolve()
    scenes, records, run = out / "scenes", out / "records", out / "run"
    exports, model_name = out / "exports", "spade"
    timings: dict[str, float] = {}
    started = time.perf_counter()

    with stage("1/6 synthetic scenes", timings):
        prepare_output(out)
        run_tool("spade-tfrecords", "synthetic", "--out", scenes / "train", "--num",
                 args.scenes, "--size", args.size, "--seed", args.seed)
        run_tool("spade-tfrecords", "synthetic", "--out", scenes / "held_out", "--num",
                 args.held_out, "--size", args.size, "--seed", args.seed + 1)

    with stage("2/6 TFRecords", timings):
        from tfrecords_tools.synthetic import NUM_CLASSES

        train_scenes = scenes / "train"
        run_tool("spade-tfrecords", "convert", "--dataset", "folders",
                 "--images", train_scenes / "images", "--labels", train_scenes / "labels",
                 "--instances", train_scenes / "instances", "--num-classes", NUM_CLASSES,
                 "--num-shards", 4, "--out", records)

    with stage("3/6 training (MirroredStrategy)", timings):
        gpus = count_gpus()
        print(f"[demo] {gpus} GPU(s); mirroring over "
              f"{f'{gpus} GPU(s)' if gpus else f'{args.cpu_replicas} logical CPU replicas'}",
              flush=True)
        devices = [] if gpus else ["--cpu-replicas", args.cpu_replicas]
        run_tool("spade-train", "--config", args.config, "--data", records,
                 "--model-dir", run, "--strategy", "mirrored", *devices,
                 "--set", f"train.epochs={args.epochs}",
                 "--set", f"train.decay_epochs={max(1, args.epochs // 2)}",
                 "--set", f"data.load_size={args.size}", "--set", f"model.crop_size={args.size}",
                 "--verbose", 2)

    with stage("4/6 export", timings):
        run_tool("spade-export", "--model-dir", run, "--export-base", exports,
                 "--model-name", model_name)

    with stage("5/6 serve and synthesize over gRPC", timings):
        held_out, synthesized = scenes / "held_out", out / "synthesized"
        picture = out / "demo.png"
        with running_server(exports, model_name) as address:
            run_tool("spade-synthesize", "--server", address, "--model-name", model_name,
                     "--labels", held_out / "labels", "--instances", held_out / "instances",
                     "--out", synthesized, "--grid", picture)
            latencies = request_times(address, model_name, held_out)

    with stage("6/6 measurements", timings):
        import numpy as np

        from spade_tf.evaluation.images import read_image
        from spade_tf.evaluation.synthetic import synthetic_scores

        names = sorted(path.name for path in (held_out / "labels").glob("*.png"))
        labels, photos = read_scenes(held_out, names)
        generated = [read_image(synthesized / name) for name in names]
        label_stack = np.stack(labels)
        scores = synthetic_scores(np.stack(generated), label_stack)
        ceiling = synthetic_scores(np.stack(photos), label_stack)
        summary = {
            "picture": str(picture), "images": str(synthesized),
            "synthetic_miou": scores.mean_iou, "synthetic_pixel_accuracy": scores.pixel_accuracy,
            "real_photo_miou": ceiling.mean_iou,
            "median_request_ms": 1000 * float(np.median(latencies[1:] or latencies)),
            "stage_seconds": timings, "total_seconds": time.perf_counter() - started,
        }
        write_text(out / "summary.json", json.dumps(summary, indent=2))

    relative = os.path.relpath(out)
    from spade_tf.config import load_config
    from spade_tf.layout import CONFIG_FILE

    table = load_config(run / CONFIG_FILE).classes()
    classes = ", ".join(f"{index} {name}" for index, name in enumerate(table.names))
    print(f"""
[demo] finished in {summary['total_seconds'] / 60:.1f} min
[demo] images: {synthesized}/; picture: {picture} (each row: label map | generated image)
[demo] synthetic mIoU of the served images on {len(labels)} held-out label maps: \
{scores.mean_iou:.3f} (pixel accuracy {scores.pixel_accuracy:.3f}); the real photos score \
{ceiling.mean_iou:.3f}. Each pixel's class is read back from its colour.
[demo] median gRPC request (one {args.size}x{args.size} image): \
{summary['median_request_ms']:.0f} ms
[demo] model folder {run}, export {exports / model_name}, figures {out / 'summary.json'}
[demo] your own label maps (PNGs of ids {classes}; instance maps beside them):
         spade-synthesize --model-dir {os.path.join(relative, 'run')} --labels MAPS/ \\
             --instances INSTANCE_MAPS/ --out images/ --resize back --grid grid.png
[demo] paint with this model in your browser: make paint (then open http://127.0.0.1:8501/)""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
