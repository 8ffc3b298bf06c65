"""Generator inference: the Keras SPADE generator next to the PyTorch one, same weights.

ADE20K at 256x256 (configs/ade20k.yaml: 151 semantic channels, ``normal`` upsampling,
base_filters 64, 96.5M parameters), batch 1, on this machine's CPU. The PyTorch network
is the parity tests' reference (spade_tf/testing/torch_reference/), randomised with
``randomize_``; its state dict goes through ``spade_tf.convert`` so both sides hold the
same weights. The randomised network is checked not to saturate (a generator whose
tanh output sits at +-1 would hide any precision difference).

Variants, each in a fresh subprocess (so peak RSS is its own), ``--repeats`` timed calls
after ``--warmup`` calls:

- PyTorch float32 under ``torch.inference_mode()``, and bfloat16 under
  ``torch.autocast("cpu", dtype=torch.bfloat16)``; ``torch.set_num_threads(cpu_count)``;
- Keras float32: the loaded generator in a ``tf.function`` (``function``); the copy of
  ``spade_tf.load_for_inference`` (spectral norm folded; what ``spade-synthesize`` and
  ``spade-eval generate`` run) in a ``tf.function`` (``folded``); the exported SavedModel's
  ``serving_default``, label ids in and uint8 out, as TF Serving runs it (``export``);
  also, not by default, the eager call and ``tf.function(jit_compile=True)`` (``xla``);
- Keras bfloat16: the same on ``load_model_dir(..., precision="bfloat16")`` (the mixed
  policy, as ``with_precision`` gives: function, eager, XLA), ``load_for_inference(...,
  "bfloat16")`` and an export with ``--precision bfloat16``.

The figure is the median of the calls during which other processes left the CPU
alone (on a shared machine another job taking one of 2 cores can double a call, and
PyTorch's OpenMP threads slow down far more than that); see benchmarks/common.py.
Memory is the resident set size (what the system charges; comparable across frameworks,
unlike their allocators' statistics): peak RSS of the process, and the peak during
inference above the RSS once the model is loaded.
Also printed: each output's difference from PyTorch float32 and, for bfloat16, from
the same framework's float32 (max and mean abs on the [-1, 1] scale).

    python benchmarks/generator_vs_torch.py [--repeats 10] [--warmup 2] [--rounds 1] [--json OUT]
    python benchmarks/generator_vs_torch.py --crop-size 512
    python benchmarks/generator_vs_torch.py --quick        # 128x128, 3 repeats
    python benchmarks/generator_vs_torch.py --variants torch-bfloat16 keras-bfloat16-xla
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    MIN_QUIET_CALLS,
    QUIET_CORES,
    MemoryTracker,
    add_json_argument,
    add_timing_arguments,
    emit_worker_result,
    format_table,
    machine,
    machine_line,
    median_of_quiet,
    progress,
    resolve_timing_arguments,
    run_script,
    run_worker,
    script_parser,
    time_calls,
    write_json,
)

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ade20k.yaml"
# name -> (framework, precision, execution mode)
VARIANTS = {
    "torch-float32": ("torch", "float32", "eager"),
    "torch-bfloat16": ("torch", "bfloat16", "autocast"),
    "keras-float32-eager": ("keras", "float32", "eager"),
    "keras-float32-function": ("keras", "float32", "tf.function"),
    "keras-float32-folded": ("keras", "float32", "folded"),
    "keras-float32-export": ("keras", "float32", "export"),
    "keras-float32-xla": ("keras", "float32", "XLA"),
    "keras-bfloat16-eager": ("keras", "bfloat16", "eager"),
    "keras-bfloat16-function": ("keras", "bfloat16", "tf.function"),
    "keras-bfloat16-folded": ("keras", "bfloat16", "folded"),
    "keras-bfloat16-export": ("keras", "bfloat16", "export"),
    "keras-bfloat16-xla": ("keras", "bfloat16", "XLA"),
}
# What `make bench` runs: PyTorch, the loaded generator in a tf.function, the copy folded
# for inference (spade-synthesize, spade-eval generate) and the exported SavedModel.
DEFAULT_VARIANTS = ["torch-float32", "torch-bfloat16",
                    "keras-float32-function", "keras-float32-folded", "keras-float32-export",
                    "keras-bfloat16-function", "keras-bfloat16-folded", "keras-bfloat16-export"]
SATURATION = 0.99  # |x| above this is tanh's flat region
MAX_SATURATED_FRACTION = 0.05
BF16_TARGET = 0.02  # max |bf16 - fp32| on the [-1, 1] scale the issue asks for


def _label(variant: str) -> str:
    framework, precision, mode = VARIANTS[variant]
    name = "PyTorch" if framework == "torch" else "Keras"
    return f"{name} {precision} {mode}"


# -- preparation (parent process) ---------------------------------------------------


def _scene_labels(height: int, width: int, num_classes: int, seed: int) -> np.ndarray:
    """[1, H, W] ids: Voronoi regions of random classes, like a segmentation map."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (24, 2)) * (height, width)
    classes = rng.integers(0, num_classes, len(centres))
    rows, cols = np.mgrid[0:height, 0:width]
    distance = (rows[..., None] - centres[:, 0]) ** 2 + (cols[..., None] - centres[:, 1]) ** 2
    return classes[distance.argmin(-1)][None].astype(np.int32)


def _spread(image: np.ndarray) -> dict:
    return {"std": float(image.std()), "min": float(image.min()), "max": float(image.max()),
            "saturated_fraction": float((np.abs(image) > SATURATION).mean())}


def _calibrate(network, semantic, passes: int = 4) -> None:
    """Running statistics from training-mode passes, so activations stay normalised."""
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()

    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the passes
    network.train()
    with torch.no_grad():
        for _ in range(passes):
            network(semantic)
    network.eval()


def prepare(work: Path, crop_size: int, seed: int, variants: list[str]) -> dict:
    """Random PyTorch generator -> state dict -> converted Keras model folder + input, and
    its exports when export variants are asked for."""
    from spade_tf.config import load_config
    from spade_tf.convert import convert_reference_checkpoints
    from spade_tf.export import export_model
    from spade_tf.testing import torch_reference as reference
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()

    config = load_config(CONFIG, [f"model.crop_size={crop_size}"])
    model = config.model
    torch.set_num_threads(os.cpu_count())
    progress(f"randomising the PyTorch generator ({model.semantic_channels} channels, "
             f"{crop_size}x{crop_size})")
    network = reference.torch_generator(config, seed=seed)
    height, width = model.image_size
    labels = _scene_labels(height, width, model.num_classes, seed)
    semantic = reference.semantic_one_hot(labels, model.num_classes)
    with torch.inference_mode():
        spread = _spread(network(semantic).numpy())
    calibrated = spread["saturated_fraction"] > MAX_SATURATED_FRACTION or spread["std"] < 0.05
    if calibrated:
        progress(f"output saturates ({spread}); calibrating the batch-norm statistics")
        _calibrate(network, semantic)
        with torch.inference_mode():
            spread = _spread(network(semantic).numpy())
    progress(f"output spread: std {spread['std']:.3f}, "
             f"{spread['saturated_fraction']:.2%} of |x| > {SATURATION}")

    reference.save_state_dict(network, str(work / "generator.pth"))
    progress("converting the state dict with spade_tf.convert")
    convert_reference_checkpoints(config, work / "model", generator=work / "generator.pth",
                                  config_name=CONFIG.name)
    np.save(work / "semantic.npy", semantic.numpy().transpose(0, 2, 3, 1))  # NHWC
    np.save(work / "labels.npy", labels)
    for precision in sorted({VARIANTS[name][1] for name in variants
                             if VARIANTS[name][2] == "export"}):
        progress(f"exporting the converted model ({precision})")
        export_model(work / "model", work / "exports" / precision, precision=precision,
                     warmup=False)
    setup = {
        "config": CONFIG.name, "crop_size": crop_size, "image_size": [height, width],
        "semantic_channels": model.semantic_channels,
        "num_upsampling_layers": model.num_upsampling_layers,
        "base_filters": model.base_filters, "parameters": reference.count_trainable(network),
        "seed": seed, "calibrated_batch_norm": calibrated, "torch_output_spread": spread,
    }
    (work / "setup.json").write_text(json.dumps(setup))
    return setup


# -- one variant (worker process) ---------------------------------------------------


def torch_generator_call(torch, network, folder: Path, precision: str):
    """``network`` (a PyTorch generator) given ``folder``'s ``generator.pth``, as a call on
    its ``semantic.npy`` returning NHWC float32 (bf16: under ``torch.autocast``)."""
    import contextlib

    network.load_state_dict(torch.load(folder / "generator.pth", weights_only=True))
    network.eval()
    semantic = torch.from_numpy(np.load(folder / "semantic.npy").transpose(0, 3, 1, 2).copy())
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bfloat16"
                else contextlib.nullcontext())

    def call() -> np.ndarray:
        with torch.inference_mode(), autocast:
            return network(semantic).float().numpy().transpose(0, 2, 3, 1)

    return call


def _torch_call(work: Path, setup: dict, precision: str):
    from spade_tf.testing import torch_reference as reference
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()

    torch.set_num_threads(os.cpu_count())
    network = reference.SPADEGenerator(
        setup["semantic_channels"], crop_size=setup["crop_size"],
        num_upsampling_layers=setup["num_upsampling_layers"],
        base_filters=setup["base_filters"])
    call = torch_generator_call(torch, network, work, precision)
    threads = {"torch_intra_op": torch.get_num_threads(),
               "torch_inter_op": torch.get_num_interop_threads()}
    return call, threads


def _export_call(work: Path, precision: str):
    """The exported SavedModel's serving_default: label ids in, uint8 image out."""
    import tensorflow as tf

    [version] = (work / "exports" / precision / "spade").iterdir()
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    labels = tf.constant(np.load(work / "labels.npy"), tf.int32)

    def call() -> np.ndarray:
        # uint8 back on the generator's [-1, 1] scale, for the accuracy table.
        return served(label_ids=labels)["image"].numpy().astype(np.float32) / 127.5 - 1.0

    return call


def _keras_call(work: Path, precision: str, mode: str):
    import tensorflow as tf

    from spade_tf.inference_loader import load_for_inference
    from spade_tf.model_dir import load_model_dir

    threads = {"tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads()
               or f"default ({os.cpu_count()})",
               "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads()
               or "default"}
    if mode == "export":
        return _export_call(work, precision), threads
    if mode == "folded":
        generator = load_for_inference(work / "model", precision).generator
    else:
        # Reduced precision: built under the mixed policy as it loads, as with_precision
        # would make it, without a float32 network beside it.
        generator = load_model_dir(work / "model", networks=("generator",),
                                   precision=precision).generator
    inputs = {"semantic": tf.constant(np.load(work / "semantic.npy"))}
    if mode == "eager":
        forward = lambda x: generator(x, training=False)  # noqa: E731
    else:
        forward = tf.function(lambda x: generator(x, training=False),
                              jit_compile=mode == "XLA")

    def call() -> np.ndarray:
        return forward(inputs).numpy()

    return call, threads


def run_variant(variant: str, work: Path, repeats: int, warmup: int,
                quiet_wait_s: float = 0.0) -> dict:
    framework, precision, mode = VARIANTS[variant]
    setup = json.loads((work / "setup.json").read_text())
    memory = MemoryTracker()
    if framework == "torch":
        call, threads = _torch_call(work, setup, precision)
    else:
        call, threads = _keras_call(work, precision, mode)
    gc.collect()
    memory.mark("built")
    outputs = []

    def timed_call() -> None:
        output = call()
        if not outputs:
            outputs.append(output)

    timing = time_calls(timed_call, repeats, warmup, label=f"{variant}: ",
                        between=lambda: memory.mark("warm-up"), quiet_wait_s=quiet_wait_s)
    memory.mark("timed")
    output = call()
    np.save(work / f"output-{variant}.npy", output.astype(np.float32))
    # The first output too: a variant whose result changes between calls is a bug.
    first_vs_last = float(np.max(np.abs(outputs[0] - output))) if outputs else 0.0
    built = memory.phases["built"]["rss_mib"]
    return {
        "variant": variant, "framework": framework, "precision": precision, "mode": mode,
        **timing.as_dict(), "threads": threads, "memory": memory.as_dict(),
        "rss_after_build_mib": built,
        # 0 when the peak stayed below the RSS at the mark (memory was freed meanwhile).
        "first_call_rss_increase_mib": max(0.0, memory.phases["warm-up"]["phase_peak_mib"]
                                           - built),
        "inference_rss_increase_mib": max(0.0, memory.phases["timed"]["phase_peak_mib"]
                                          - built),
        "first_vs_last_output_max_abs": first_vs_last,
    }


# -- report (parent process) --------------------------------------------------------


def _combine(runs: list[dict]) -> dict:
    """One variant's rounds: all timed calls pooled, memory the worst round's."""
    combined = dict(runs[-1])
    times = [t for run in runs for t in run["times_ms"]]
    loads = [load for run in runs for load in run["background_loads"]]
    known = [load for load in loads if load is not None]
    combined.update(
        times_ms=times, background_loads=loads, **median_of_quiet(times, loads),
        median_all_ms=statistics.median(times), min_ms=min(times), max_ms=max(times),
        first_call_s=statistics.median(run["first_call_s"] for run in runs),
        background_load_cores=statistics.mean(known) if known else None,
        rounds=[{key: run[key] for key in ("median_ms", "first_call_s",
                                           "background_load_cores")} for run in runs])
    for key in ("rss_after_build_mib", "first_call_rss_increase_mib",
                "inference_rss_increase_mib", "first_vs_last_output_max_abs"):
        combined[key] = max(run[key] for run in runs)
    combined["memory"] = {**runs[-1]["memory"],
                          "peak_rss_mib": max(run["memory"]["peak_rss_mib"] for run in runs)}
    return combined


def _difference(a: np.ndarray, b: np.ndarray) -> dict:
    delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return {"max_abs": float(delta.max()), "mean_abs": float(delta.mean())}


def _float32_counterpart(name: str, outputs: dict) -> str | None:
    """The float32 variant a reduced-precision one is compared with: same framework and
    mode when run (an export with an export: both are rounded to uint8), else the first
    float32 variant of the framework."""
    framework, _, mode = VARIANTS[name]
    candidates = [other for other in outputs if VARIANTS[other][:2] == (framework, "float32")]
    same_mode = [other for other in candidates if VARIANTS[other][2] == mode]
    return (same_mode or candidates or [None])[0]


def _accuracy(work: Path, results: dict) -> dict:
    """Each output against PyTorch float32 and against its framework's float32."""
    outputs = {name: np.load(work / f"output-{name}.npy") for name in results}
    accuracy = {}
    for name, output in outputs.items():
        precision = VARIANTS[name][1]
        entry = {"spread": _spread(output)}
        if "torch-float32" in outputs and name != "torch-float32":
            entry["vs_torch_float32"] = _difference(output, outputs["torch-float32"])
        same = _float32_counterpart(name, outputs)
        if precision != "float32" and same is not None:
            entry["same_framework_float32"] = same
            entry["vs_same_framework_float32"] = _difference(output, outputs[same])
        accuracy[name] = entry
    return accuracy


def _speed_rows(results: dict) -> list[list[str]]:
    rows = []
    for name, result in results.items():
        framework, precision, _ = VARIANTS[name]
        torch_result = results.get(f"torch-{precision}")
        if framework == "torch":
            ratio = "reference"
        elif torch_result is None:
            ratio = "n/a"
        else:
            value = result["median_ms"] / torch_result["median_ms"]
            ratio = f"{value:.2f}x ({'faster' if value < 1 else 'slower'})"
        quiet = f"{result['quiet_calls']}/{len(result['times_ms'])}"
        rows.append([_label(name), f"{result['median_ms']:.0f}" + ("" if result["of_quiet"]
                                                                   else " *"),
                     quiet, f"{result['median_all_ms']:.0f}",
                     f"{result['min_ms']:.0f}-{result['max_ms']:.0f}", ratio,
                     f"{result['first_call_s']:.1f}", f"{result['memory']['peak_rss_mib']:.0f}",
                     f"{result['rss_after_build_mib']:.0f}",
                     f"{result['inference_rss_increase_mib']:.0f}",
                     f"{result['first_call_rss_increase_mib']:.0f}"])
    return rows


def _accuracy_rows(accuracy: dict) -> list[list[str]]:
    def pair(entry: dict | None) -> str:
        return "-" if entry is None else f"{entry['max_abs']:.2e} / {entry['mean_abs']:.2e}"

    rows = []
    for name, entry in accuracy.items():
        same = entry.get("vs_same_framework_float32")
        verdict = "-" if same is None else (
            "ok" if same["max_abs"] <= BF16_TARGET else f"over {BF16_TARGET}")
        rows.append([_label(name), pair(entry.get("vs_torch_float32")), pair(same), verdict,
                     f"{entry['spread']['std']:.3f}",
                     f"{entry['spread']['saturated_fraction']:.2%}"])
    return rows


def report(setup: dict, results: dict, accuracy: dict, info: dict, args) -> None:
    threads = {}
    for result in results.values():
        threads.update(result["threads"])
    print(machine_line(info))
    print("threads: " + ", ".join(f"{key} {value}" for key, value in threads.items()))
    height, width = setup["image_size"]
    print(f"model: {setup['config']} generator at {height}x{width}, "
          f"{setup['semantic_channels']} semantic channels, {setup['num_upsampling_layers']} "
          f"upsampling, base_filters {setup['base_filters']}, {setup['parameters']:,} "
          f"parameters; PyTorch weights from torch_reference.randomize_(seed "
          f"{setup['seed']})" + (", batch-norm statistics calibrated" if
                                 setup["calibrated_batch_norm"] else "")
          + ", converted with spade_tf.convert; batch 1")
    rounds = (f"{args.rounds} rounds (the variants in turn, each round in fresh processes), "
              "calls pooled; " if args.rounds > 1 else "")
    print(f"timing: {args.repeats} calls after {args.warmup} warm-up call(s) per variant, each "
          f"variant in a fresh process; {rounds}'median ms' is the median of the quiet calls "
          f"(other processes kept < {QUIET_CORES} cores busy meanwhile), '*' where fewer than "
          f"{MIN_QUIET_CALLS} were quiet and all calls are used; first call = the first "
          "warm-up call (tracing, XLA compilation, thread pools)")
    print("memory: RSS (resident set size) of the variant's process, peak = VmHWM; 'loaded' "
          "= after the model is built and its weights loaded; '+infer' = peak during the "
          "timed calls above 'loaded'; '+1st' = peak during the warm-up calls above 'loaded'")
    print()
    print(format_table(
        ["variant", "median ms", "quiet calls", "all-calls median", "range ms",
         "vs PyTorch same precision", "1st call s",
         "peak RSS MiB", "loaded MiB", "+infer MiB", "+1st MiB"],
        _speed_rows(results)))
    print()
    print("accuracy (max abs / mean abs, output on the [-1, 1] scale; exports return uint8, "
          "read back as x / 127.5 - 1, so they carry up to 1/255 of rounding); same-framework "
          f"float32 = the float32 variant of the same mode; bf16 target: max abs <= "
          f"{BF16_TARGET}")
    print(format_table(
        ["variant", "vs PyTorch float32", "vs same-framework float32", "bf16 target",
         "output std", f"|x|>{SATURATION}"],
        _accuracy_rows(accuracy)))
    keras_fp32 = next((entry["vs_torch_float32"] for name, entry in accuracy.items()
                       if VARIANTS[name][:2] == ("keras", "float32") and VARIANTS[name][2]
                       != "export" and "vs_torch_float32" in entry), None)
    if keras_fp32 is not None:
        print(f"sanity: Keras float32 vs PyTorch float32, same weights: max abs "
              f"{keras_fp32['max_abs']:.2e}, mean abs {keras_fp32['mean_abs']:.2e}")
    unstable = {name: r["first_vs_last_output_max_abs"] for name, r in results.items()
                if r["first_vs_last_output_max_abs"] > 0}
    if unstable:
        print(f"note: outputs changed between calls (max abs): {unstable}")


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per variant (10; 3 with --quick)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the whole set of variants this many times, in turn, and "
                             "pool the calls: spreads background noise over all variants (1)")
    add_timing_arguments(
        parser, "call", crop_help="image side (256, ADE20K's; 128 with --quick)",
        quick_help="128x128, 3 repeats, 1 warm-up: the code path in a few minutes")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        default=DEFAULT_VARIANTS, metavar="VARIANT",
                        help=f"which variants to run ({' '.join(DEFAULT_VARIANTS)}); all: "
                             + ", ".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (0)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the work folder (state dict, model, outputs) here")
    add_json_argument(parser)
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 10)
    resolve_timing_arguments(parser, args, "call")

    if args.worker:
        emit_worker_result(run_variant(args.worker, args.work, args.repeats, args.warmup,
                                       args.quiet_wait))
        return

    info = machine()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="spade-generator-bench-"))
    try:
        setup = prepare(work, args.crop_size, args.seed, args.variants)
        runs = {variant: [] for variant in args.variants}
        for round_index in range(args.rounds):
            for variant in args.variants:
                progress(f"round {round_index + 1}/{args.rounds}: {variant} in a fresh process")
                run = run_worker([__file__, "--worker", variant, "--work", work,
                                  "--repeats", args.repeats, "--warmup", args.warmup,
                                  "--quiet-wait", args.quiet_wait])
                runs[variant].append(run)
                progress(f"{variant}: median {run['median_ms']:.0f} ms ({run['quiet_calls']} "
                         f"quiet calls of {len(run['times_ms'])})")
        results = {variant: _combine(variant_runs) for variant, variant_runs in runs.items()}
        accuracy = _accuracy(work, results)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    info["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    report(setup, results, accuracy, info, args)
    write_json(args.json, {"benchmark": "generator_vs_torch", "machine": info, "setup": setup,
                           "repeats": args.repeats, "warmup": args.warmup,
                           "results": results, "accuracy": accuracy})


if __name__ == "__main__":
    run_script(main)
