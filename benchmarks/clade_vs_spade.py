"""Generator inference, CLADE against SPADE: ours and the official structures in PyTorch.

The ADE20K generator (configs/ade20k.yaml: 151 classes, ``normal`` upsampling,
base_filters 64) with ``model.norm_mode`` spade and clade, batch 1, at each
``--crop-sizes`` (256 and 512), float32 and bfloat16, on this machine's CPU. The PyTorch
networks are the parity tests' (spade_tf/testing/torch_reference/: SPADE's structure and
the CLADE fork's, tzt101/CLADE), randomised with ``randomize_``; their state dicts go
through ``spade_tf.convert`` so both frameworks hold the same weights. Ours: the loaded
generator in a ``tf.function`` (bfloat16: ``load_model_dir(..., precision="bfloat16")``,
the mixed policy); PyTorch: ``torch.inference_mode()``, bfloat16 under
``torch.autocast("cpu")``.

Times come from one process per framework and precision that holds both generators and
alternates their calls (SPADE then CLADE, then CLADE then SPADE, ...: ``--repeats`` pairs
after ``--warmup`` calls of each), so both see the same background load on a shared
machine; the ratio is the median of the pairs' ratios. Peak memory comes from one fresh
process per variant (one warm-up call and one timed call), so each peak RSS is its own.
Also printed: the
parameters and convolution multiply-accumulates each modulation adds to the backbone (the
generator without them), beside the CLADE paper's figures (Tan et al., arXiv 2004.02867:
on the ADE20K generator, CLADE adds 4.57% parameters and 0.07% computation, SPADE 39.21%
and 234.73%).

    python benchmarks/clade_vs_spade.py [--crop-sizes 256 512] [--repeats 5] [--json OUT]
    python benchmarks/clade_vs_spade.py --quick          # 128x128, 2 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    BackgroundLoad,
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
from benchmarks.generator_vs_torch import (  # noqa: E402
    MAX_SATURATED_FRACTION,
    _calibrate,
    _scene_labels,
    _spread,
    torch_generator_call,
)

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ade20k.yaml"
NORM_MODES = ("spade", "clade")
PRECISIONS = ("float32", "bfloat16")
FRAMEWORKS = ("torch", "keras")
VARIANTS = [f"{norm}-{framework}-{precision}" for norm in NORM_MODES
            for precision in PRECISIONS for framework in FRAMEWORKS]
PAIRS = [f"{framework}-{precision}" for precision in PRECISIONS for framework in FRAMEWORKS]
# The paper's extra cost of each modulation on the ADE20K generator, % of the backbone.
PAPER = {"spade": {"parameters": 39.21, "compute": 234.73},
         "clade": {"parameters": 4.57, "compute": 0.07}}


def _parse(variant: str) -> tuple[str, str, str]:
    norm, framework, precision = variant.split("-")
    return norm, framework, precision


# -- preparation (parent process) ---------------------------------------------------


def _costs(network, semantic) -> dict:
    """Trainable parameters and multiply-accumulates (MACs) of one forward pass, split into
    the modulation (every module inside a ``norm_*``: its convs, and one MAC per modulated
    element for ``norm(x) * gamma + beta``) and the backbone (every other conv)."""
    from spade_tf.testing import torch_reference as reference
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()
    macs = {"modulation": 0, "backbone": 0}

    def affine(module, inputs, output):
        macs["modulation"] += inputs[0].numel() // inputs[0].shape[0]

    def part(name: str) -> str:
        return "modulation" if ".norm_" in f".{name}" else "backbone"

    def hook(name):
        def count(module, inputs, output):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            macs[part(name)] += output.numel() // output.shape[0] * kernel * module.in_channels
        return count

    handles = [module.register_forward_hook(hook(name))
               for name, module in network.named_modules() if isinstance(module, torch.nn.Conv2d)]
    handles += [module.register_forward_hook(affine) for module in network.modules()
                if isinstance(module, (reference.SPADE, reference.CLADE))]
    with torch.inference_mode():
        output = network(semantic).numpy()
    for handle in handles:
        handle.remove()
    parameters = {"modulation": 0, "backbone": 0}
    for name, value in network.named_parameters():
        parameters[part(name)] += value.numel()
    return {"parameters": parameters, "conv_macs": macs, "output": output}


def prepare(work: Path, crop_size: int, seed: int) -> dict:
    """Per norm mode: a random PyTorch generator -> state dict -> converted model folder;
    the label map and its one-hot input; the parameter and MAC counts."""
    from spade_tf.config import load_config
    from spade_tf.convert import convert_reference_checkpoints
    from spade_tf.testing import torch_reference as reference
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()
    torch.set_num_threads(os.cpu_count())
    setup = {"crop_size": crop_size, "seed": seed, "norms": {}}
    for norm in NORM_MODES:
        config = load_config(CONFIG, [f"model.crop_size={crop_size}", f"model.norm_mode={norm}"])
        model = config.model
        folder = work / norm
        folder.mkdir(parents=True, exist_ok=True)
        progress(f"{norm}: randomising the PyTorch generator at {crop_size}x{crop_size}")
        network = reference.torch_generator(config, seed=seed)
        height, width = model.image_size
        labels = _scene_labels(height, width, model.num_classes, seed)
        semantic = reference.semantic_one_hot(labels, model.num_classes)
        costs = _costs(network, semantic)
        spread = _spread(costs.pop("output"))
        calibrated = spread["saturated_fraction"] > MAX_SATURATED_FRACTION or spread["std"] < 0.05
        if calibrated:
            progress(f"{norm}: output saturates; calibrating the batch-norm statistics")
            _calibrate(network, semantic)
            with torch.inference_mode():
                spread = _spread(network(semantic).numpy())
        reference.save_state_dict(network, str(folder / "generator.pth"))
        convert_reference_checkpoints(config, folder / "model",
                                      generator=folder / "generator.pth")
        np.save(folder / "semantic.npy", semantic.numpy().transpose(0, 2, 3, 1))
        setup["norms"][norm] = {
            "image_size": [height, width], "semantic_channels": model.semantic_channels,
            "total_parameters": reference.count_trainable(network), **costs,
            "calibrated_batch_norm": calibrated, "torch_output_spread": spread}
    (work / "setup.json").write_text(json.dumps(setup))
    return setup


# -- one variant (worker process) ---------------------------------------------------


def _torch_call(folder: Path, setup: dict, norm: str, precision: str):
    from spade_tf.testing import torch_reference as reference
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()
    torch.set_num_threads(os.cpu_count())
    network = reference.SPADEGenerator(setup["norms"][norm]["semantic_channels"],
                                       crop_size=setup["crop_size"], norm_mode=norm)
    return torch_generator_call(torch, network, folder, precision)


def _keras_call(folder: Path, precision: str):
    import tensorflow as tf

    from spade_tf.model_dir import load_model_dir

    generator = load_model_dir(folder / "model", networks=("generator",),
                               precision=precision).generator
    inputs = {"semantic": tf.constant(np.load(folder / "semantic.npy"))}
    forward = tf.function(lambda x: generator(x, training=False))

    def call() -> np.ndarray:
        return forward(inputs).numpy().astype(np.float32)

    return call


def run_variant(variant: str, work: Path, repeats: int, warmup: int,
                quiet_wait_s: float) -> dict:
    norm, framework, precision = _parse(variant)
    setup = json.loads((work / "setup.json").read_text())
    memory = MemoryTracker()
    call = (_torch_call(work / norm, setup, norm, precision) if framework == "torch"
            else _keras_call(work / norm, precision))
    memory.mark("built")
    timing = time_calls(call, repeats, warmup, label=f"{variant}: ",
                        between=lambda: memory.mark("warm-up"), quiet_wait_s=quiet_wait_s)
    memory.mark("timed")
    np.save(work / f"output-{variant}.npy", call())
    return {"variant": variant, "norm": norm, "framework": framework, "precision": precision,
            **timing.as_dict(), "memory": memory.as_dict()}


def run_pair(pair: str, work: Path, repeats: int, warmup: int) -> dict:
    """Both generators of one framework and precision, their calls alternated."""
    framework, precision = pair.split("-")
    setup = json.loads((work / "setup.json").read_text())
    calls = {norm: (_torch_call(work / norm, setup, norm, precision) if framework == "torch"
                    else _keras_call(work / norm, precision)) for norm in NORM_MODES}
    for norm, call in calls.items():
        for _ in range(warmup):
            call()
        progress(f"{pair}: {norm} warmed up")
    times = {norm: [] for norm in NORM_MODES}
    loads = []
    for index in range(repeats):
        with BackgroundLoad() as load:
            for norm in (NORM_MODES if index % 2 == 0 else NORM_MODES[::-1]):
                start = time.perf_counter()
                calls[norm]()
                times[norm].append((time.perf_counter() - start) * 1000.0)
        loads.append(load.cores)
        progress(f"{pair}: pair {index + 1}/{repeats}: SPADE {times['spade'][-1]:.0f} ms, "
                 f"CLADE {times['clade'][-1]:.0f} ms (other processes: "
                 f"{'?' if load.cores is None else f'{load.cores:.2f}'} cores)")
    ratios = [c / s for s, c in zip(times["spade"], times["clade"], strict=True)]
    known = [load for load in loads if load is not None]
    return {"pair": pair, "times_ms": times, "ratios": ratios,
            "median_ms": {norm: statistics.median(values) for norm, values in times.items()},
            "median_ratio": statistics.median(ratios),
            "background_load_cores": statistics.mean(known) if known else None}


# -- report (parent process) --------------------------------------------------------


def _cost_rows(setup: dict) -> list[list[str]]:
    rows = []
    for norm, entry in setup["norms"].items():
        params, macs = entry["parameters"], entry["conv_macs"]
        rows.append([
            norm.upper(), f"{entry['total_parameters']:,}", f"{params['backbone']:,}",
            f"{params['modulation']:,}",
            f"{100 * params['modulation'] / params['backbone']:.2f}%",
            f"{PAPER[norm]['parameters']:.2f}%", f"{macs['backbone'] / 1e9:.1f}",
            f"{macs['modulation'] / 1e9:.2f}",
            f"{100 * macs['modulation'] / macs['backbone']:.2f}%",
            f"{PAPER[norm]['compute']:.2f}%"])
    return rows


def _peak(results: dict, variant: str) -> float | None:
    result = results.get(variant)
    return None if result is None else result["memory"]["peak_rss_mib"]


def _speed_rows(results: dict, pairs: dict) -> list[list[str]]:
    rows = []
    for pair, timing in pairs.items():
        framework, precision = pair.split("-")
        name = "ours" if framework == "keras" else "PyTorch (official structures)"
        peaks = [_peak(results, f"{norm}-{pair}") for norm in NORM_MODES]
        memory = (f"{peaks[1] / peaks[0]:.2f}x" if None not in peaks else "-")
        load = timing["background_load_cores"]
        rows.append([precision, name, f"{timing['median_ms']['spade']:.0f}",
                     "-" if peaks[0] is None else f"{peaks[0]:.0f}",
                     f"{timing['median_ms']['clade']:.0f}",
                     "-" if peaks[1] is None else f"{peaks[1]:.0f}",
                     f"{timing['median_ratio']:.2f}x", memory,
                     "?" if load is None else f"{load:.2f}"])
    return rows


def _agreement(work: Path, results: dict) -> dict:
    """Ours against PyTorch, same norm and precision (max abs on the [-1, 1] scale)."""
    agreement = {}
    for variant in results:
        norm, framework, precision = _parse(variant)
        other = f"{norm}-torch-{precision}"
        if framework == "keras" and other in results:
            ours, theirs = (np.load(work / f"output-{name}.npy") for name in (variant, other))
            agreement[variant] = float(np.abs(ours.astype(np.float64) - theirs).max())
    return agreement


def report(size_figures: dict, info: dict, args) -> None:
    print(machine_line(info))
    print(f"timing: {args.repeats} alternated SPADE/CLADE pairs after {args.warmup} warm-up "
          "call(s) of each, one process per framework and precision; medians, and the median "
          "of the pairs' ratios; peak RSS: one fresh process per variant; batch 1; ours = the "
          "loaded generator in a tf.function (bf16: the mixed policy), PyTorch = the same "
          "weights under inference_mode (bf16: autocast); 'load' = cores other processes "
          "kept busy meanwhile (of the machine's)")
    for crop_size, figures in size_figures.items():
        print(f"\nADE20K generator at {crop_size}x{crop_size} (151 classes, base_filters 64)")
        print(format_table(
            ["precision", "framework", "SPADE ms", "SPADE peak RSS MiB", "CLADE ms",
             "CLADE peak RSS MiB", "CLADE / SPADE time", "CLADE / SPADE RSS", "load"],
            _speed_rows(figures["results"], figures["pairs"]), align="llrrrrrrr"))
        print("ours vs PyTorch, max abs: " + ", ".join(
            f"{name} {value:.1e}" for name, value in figures["agreement"].items()))
    first = next(iter(size_figures.values()))["setup"]
    print(f"\nextra cost of the modulation at {first['crop_size']}x{first['crop_size']}: "
          "parameters and multiply-accumulates (MACs: the norm layers' convs and one per "
          "modulated element) against the backbone's (every other conv); paper: Tan et al., "
          "arXiv 2004.02867 (ADE20K generator)")
    print(format_table(
        ["norm", "parameters", "backbone", "modulation", "extra", "paper", "backbone GMACs",
         "modulation GMACs", "extra", "paper"], _cost_rows(first), align="lrrrrrrrrr"))


def summary_rows(figures: dict) -> list[tuple]:
    """run_all.py's summary: CLADE's time and peak RSS against SPADE's, per size."""
    rows = []
    for crop_size, entry in figures["sizes"].items():
        for pair, timing in entry["pairs"].items():
            framework, precision = pair.split("-")
            peaks = [_peak(entry["results"], f"{norm}-{pair}") for norm in NORM_MODES]
            memory = (f"; peak RSS {peaks[1]:.0f} MiB, {peaks[1] / peaks[0]:.2f}x SPADE's"
                      if None not in peaks else "")
            name = "ours" if framework == "keras" else "PyTorch"
            rows.append((f"CLADE vs SPADE {crop_size}x{crop_size} b1",
                         f"{name} CLADE {precision}", f"{timing['median_ms']['clade']:.0f}",
                         "ms", f"{timing['median_ratio']:.2f}x SPADE's time "
                         f"({timing['median_ms']['spade']:.0f} ms){memory}"))
    return rows


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed SPADE/CLADE pairs (5; 2 with --quick)")
    add_timing_arguments(parser, "call", crop_help="one image side (see --crop-sizes)",
                         quick_help="128x128 only, 2 repeats, 1 warm-up")
    parser.add_argument("--crop-sizes", type=int, nargs="+", default=None,
                        help="image sides (256 512; 128 with --quick)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS,
                        metavar="VARIANT", help="NORM-FRAMEWORK-PRECISION, e.g. clade-keras-"
                                                "bfloat16 (all 8 by default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (0)")
    add_json_argument(parser)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--pair", choices=PAIRS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.repeats = args.repeats or (2 if args.quick else 5)
    crop_sizes = args.crop_sizes or ([args.crop_size] if args.crop_size else None)
    resolve_timing_arguments(parser, args, "call")
    if args.worker:
        emit_worker_result(run_variant(args.worker, args.work, args.repeats, args.warmup,
                                       args.quiet_wait))
        return
    if args.pair:
        emit_worker_result(run_pair(args.pair, args.work, args.repeats, args.warmup))
        return

    crop_sizes = crop_sizes or ([128] if args.quick else [256, 512])
    info = machine()
    size_figures = {}
    work = Path(tempfile.mkdtemp(prefix="spade-clade-bench-"))
    try:
        for crop_size in crop_sizes:
            folder = work / str(crop_size)
            setup = prepare(folder, crop_size, args.seed)
            pairs = {}
            for pair in PAIRS:
                if not any(variant.endswith(pair) for variant in args.variants):
                    continue
                progress(f"{crop_size}: {pair}, SPADE and CLADE alternated, in a fresh process")
                pairs[pair] = run_worker([__file__, "--pair", pair, "--work", folder,
                                          "--repeats", args.repeats, "--warmup", args.warmup])
            results = {}
            for variant in args.variants:
                progress(f"{crop_size}: {variant} alone in a fresh process (peak RSS)")
                results[variant] = run_worker(
                    [__file__, "--worker", variant, "--work", folder, "--repeats", 1,
                     "--warmup", 1, "--quiet-wait", 0])
            size_figures[crop_size] = {"setup": setup, "results": results, "pairs": pairs,
                                       "agreement": _agreement(folder, results)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    report(size_figures, info, args)
    write_json(args.json, {"benchmark": "clade_vs_spade", "machine": info,
                           "repeats": args.repeats, "warmup": args.warmup,
                           "sizes": size_figures})


if __name__ == "__main__":
    run_script(main)
