"""TFLite against the SavedModel: size on disk, time and peak memory of one image.

The ADE20K generator (151 classes, 256x256, random weights) with ``model.norm_mode`` spade
and clade, exported both ways (``spade-export``'s code): the SavedModel's
``serving_default`` (``tf.saved_model.load``, 2 threads), and ``.tflite`` files in float32,
float16 and int8 (dynamic range) in LiteRT's interpreter (XNNPACK, 2 threads). Each
variant runs in a fresh process (peak RSS is its own): load, warm up, then the median of
``--repeats`` calls of one label map. The builtins-only check runs on every file, and each
quantized file's image is compared with the float32 file's (uint8 levels: max and mean).

    python benchmarks/tflite_export.py [--repeats N] [--json OUT]
    python benchmarks/tflite_export.py --quick    # ADE20K at 128x128, fewer calls
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    MemoryTracker,
    add_json_argument,
    add_timing_arguments,
    emit_worker_result,
    format_table,
    machine,
    machine_line,
    progress,
    resolve_timing_arguments,
    run_script,
    run_worker,
    script_parser,
    time_calls,
    write_json,
)

NORM_MODES = ("spade", "clade")
VARIANTS = ("saved_model", "float32", "float16", "int8")
THREADS = 2


def _label_map(size: int, classes: int = 151) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, classes, (1, size, size)).astype(np.int32)


def _folder_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) \
        if path.is_dir() else path.stat().st_size


def export_all(norm_mode: str, crop_size: int, base: Path) -> dict[str, Path]:
    """A random ADE20K generator of ``norm_mode`` as a model folder, exported four ways."""
    import keras

    from spade_tf.config import load_config
    from spade_tf.export import export_model
    from spade_tf.model_dir import ModelDir, save_model_dir
    from spade_tf.models import build_generator
    from spade_tf.tflite import QUANTIZATIONS, export_tflite

    config = load_config(Path(__file__).resolve().parent.parent / "configs" / "ade20k.yaml",
                         [f"model.crop_size={crop_size}", f"model.norm_mode={norm_mode}"])
    keras.utils.set_random_seed(0)
    folder = save_model_dir(base / f"{norm_mode}-model",
                            ModelDir(config, build_generator(config.model)))
    paths = {"saved_model": export_model(folder, base / "exports", norm_mode, warmup=False,
                                         precision="float32")}
    for quantization in QUANTIZATIONS:
        progress(f"{norm_mode}: converting to TFLite {quantization}")
        paths[quantization] = export_tflite(folder, base / "exports", norm_mode, quantization)
    return paths


def run_variant(variant: str, path: str, crop_size: int, repeats: int, warmup: int,
                out: str) -> dict:
    """One variant in this process: load, time, peak RSS; its image saved to ``out``."""
    memory = MemoryTracker()
    labels = _label_map(crop_size)
    if variant == "saved_model":
        import tensorflow as tf

        from spade_tf import signatures as sig

        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        function = tf.saved_model.load(path).signatures[sig.DEFAULT_SIGNATURE]

        def call():
            return function(label_ids=tf.constant(labels))[sig.IMAGE].numpy()
        operators = None
    else:
        from spade_tf.tflite import TFLiteRunner, operator_names

        runner = TFLiteRunner(path, threads=THREADS)
        operators = operator_names(Path(path).read_bytes())

        def call():
            return runner.run(labels)
    memory.mark("loaded")
    timing = time_calls(call, repeats, warmup, label=f"{variant}: ")
    np.save(out, call())
    memory.mark("called")
    return {"variant": variant, "median_ms": timing.median_ms, "first_s": timing.first_s,
            "peak_rss_mib": memory.lifetime_peak_mib, "size_mib": _folder_size(Path(path)) / 2**20,
            "custom_operators": None if operators is None else
            [name for name in operators if name.startswith("custom:")]}


def summary_rows(figures: dict) -> list[tuple]:
    """run_all.py's summary: each .tflite file's size, time and peak RSS."""
    return [(f"TFLite {r['norm_mode']} {r['crop_size']}x{r['crop_size']} b1", r["variant"],
             f"{r['median_ms']:.0f}", "ms", f"{r['size_mib']:.1f} MiB on disk; peak RSS "
             f"{r['peak_rss_mib']:.0f} MiB") for r in figures["results"]]


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (5; 2 with --quick)")
    add_timing_arguments(parser, "call", crop_help="image side (256; 128 with --quick)",
                         quick_help="ADE20K at 128x128 and fewer calls")
    parser.add_argument("--norm-modes", nargs="+", choices=NORM_MODES, default=list(NORM_MODES),
                        help="generators to export (both)")
    add_json_argument(parser)
    parser.add_argument("--worker", nargs=3, metavar=("VARIANT", "PATH", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    resolve_timing_arguments(parser, args, "call")
    repeats = args.repeats or (2 if args.quick else 5)
    if args.worker:
        variant, path, out = args.worker
        emit_worker_result(run_variant(variant, path, args.crop_size, repeats, args.warmup,
                                       out))
        return
    info = machine()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        for norm_mode in args.norm_modes:
            paths = export_all(norm_mode, args.crop_size, base)
            images, rows = {}, {}
            for variant in VARIANTS:
                out = base / f"{norm_mode}-{variant}.npy"
                result = run_worker([__file__, "--worker", variant, paths[variant], out,
                                     "--crop-size", args.crop_size, "--repeats", repeats,
                                     "--warmup", args.warmup])
                images[variant] = np.load(out).astype(int)
                rows[variant] = result
                result.update(norm_mode=norm_mode, crop_size=args.crop_size)
                progress(f"{norm_mode} {variant}: {result['median_ms']:.0f} ms, "
                         f"{result['peak_rss_mib']:.0f} MiB peak, {result['size_mib']:.1f} MiB")
                results.append(result)
            # uint8 levels: float32 .tflite against the SavedModel, the others against it.
            for variant, against in (("float32", "saved_model"), ("float16", "float32"),
                                     ("int8", "float32")):
                difference = np.abs(images[variant] - images[against])
                rows[variant].update(max_level_difference=int(difference.max()),
                                     mean_level_difference=float(difference.mean()))
    print(machine_line(info))
    print(f"ADE20K generator {args.crop_size}x{args.crop_size}, batch 1, {THREADS} threads; "
          "level differences: uint8 image against the float32 .tflite's (float32 row: "
          "against the SavedModel's)")
    rows = [(r["norm_mode"], r["variant"], f"{r['size_mib']:.1f}", f"{r['median_ms']:.0f}",
             f"{r['peak_rss_mib']:.0f}",
             "-" if r["custom_operators"] is None else ("none" if not r["custom_operators"]
                                                        else ",".join(r["custom_operators"])),
             f"{r.get('max_level_difference', '-')} / {r.get('mean_level_difference', 0):.3f}"
             if "max_level_difference" in r else "-")
            for r in results]
    print(format_table(["generator", "format", "size MiB", "median ms", "peak RSS MiB",
                        "non-builtin ops", "levels max / mean"], rows, align="llrrrll"))
    write_json(args.json, {"benchmark": "tflite_export", "machine": info, "results": results})


if __name__ == "__main__":
    run_script(main)
