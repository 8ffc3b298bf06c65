"""Training speed: seconds per GauGAN training step (one G step + one D step), ours and PyTorch's.

Cases (each with ``train.mixed_precision`` float32 and mixed_bfloat16):

- ``demo``: configs/demo.yaml as it is (64x64, 8 classes + instance edges, batch 8,
  no VGG loss);
- ``ade20k``: configs/ade20k.yaml at 256x256, batch 1, with the VGG19 perceptual loss
  (random VGG19 weights from ``spade_tf.training.vgg.random_vgg_features``: the real ones cannot
  be downloaded here, and the weights do not change the step's cost).

Ours: the trainer from ``spade_tf.training.build_trainer``; its ``train_step`` (what
``fit`` runs: G forward through D and VGG, G update, fresh fake, D update, loss
trackers) is wrapped in ``tf.function`` as ``fit`` does (``jit_compile`` from the
config) and called on one fixed batch held in memory, so the figure is the step alone,
with no input pipeline.

PyTorch (``--frameworks torch``, on by default): one iteration as the reference's own
trainer runs it (NVlabs/SPADE's ``Pix2PixTrainer``: ``run_generator_one_step`` then
``run_discriminator_one_step``), on the suite's PyTorch networks and losses
(``spade_tf.testing.torch_reference``: same networks, hinge + feature matching + VGG19
losses, D on fake and real in one batch, the fresh fake under ``no_grad``), with
``torch.optim.Adam`` (beta1 0, beta2 0.9, G lr 1e-4, D lr 4e-4) on the same batch; bfloat16
as ``torch.autocast`` around the forward passes. Random weights on both sides.
``benchmarks/reference_trainer.py`` holds and frees what the reference's trainer does.
Until issue 26 this side was the parity tests' ``ReferenceGauGAN.train_step``, whose values
are the same (bit-identical losses and weights) but which differed in what it held: the
whole VGG19 stack (conv5_2 ... conv5_4 too, 7.1M weights the reference frees once built),
one semantic map built outside the step and held for the run (the reference builds it in
each forward call), no ``requires_grad_()`` on the D step's fresh fake (the reference's
D backward pass also computes the gradient into D's input), nothing kept between the
steps (the reference's trainer keeps the G step's losses and image through the D step).

Each (case, framework, precision) runs in a fresh process (peak RSS is its own); the
median of ``--repeats`` steps after ``--warmup`` steps (of the steps during which other
processes left the CPU alone, see benchmarks/common.py) is reported, with peak RSS.

    python benchmarks/training_step.py [--cases demo ade20k] [--repeats N] [--json OUT]
    python benchmarks/training_step.py --quick     # ADE20K at 128x128, fewer steps
    python benchmarks/training_step.py --jit       # also the XLA-compiled step
    python benchmarks/training_step.py --set train.ema_decay=0.999   # our step with EMA
"""

from __future__ import annotations

import argparse
import math
import os
import sys
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
    progress,
    resolve_timing_arguments,
    run_script,
    run_worker,
    script_parser,
    time_calls,
    write_json,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
# case -> (config file, overrides; the crop size is added for ade20k)
CASES = {
    "demo": ("demo.yaml", []),
    "ade20k": ("ade20k.yaml", ["train.batch_size=1", "train.vgg_weight=10.0"]),
}
PRECISIONS = ("float32", "mixed_bfloat16")
DEFAULT_REPEATS = {"demo": 10, "ade20k": 5}
QUICK_REPEATS = {"demo": 5, "ade20k": 2}


def _config(case: str, crop_size: int, precision: str, jit: bool, extra: tuple = ()):
    """The case's config; ``extra``: more ``key=value`` overrides (``--set``)."""
    from spade_tf.config import load_config

    name, overrides = CASES[case]
    overrides = [*overrides, f"train.mixed_precision={precision}",
                 f"train.jit_compile={str(jit).lower()}"]
    if case == "ade20k":
        overrides.append(f"model.crop_size={crop_size}")
    return load_config(CONFIGS / name, [*overrides, *extra])


FRAMEWORKS = ("keras", "torch")


def fixed_batch(config, seed: int = 0) -> dict:
    """One fixed batch in the layout of spade_tf.data.make_input_fn (numpy): blocky labels."""
    model, batch = config.model, config.train.batch_size
    height, width = model.image_size
    rng = np.random.default_rng(seed)
    block = 16

    def blocky(high: int) -> np.ndarray:
        coarse = rng.integers(0, high, (batch, -(-height // block), -(-width // block)))
        return coarse.repeat(block, 1).repeat(block, 2)[:, :height, :width].astype(np.int32)

    data = {"label": blocky(model.num_classes),
            "image": rng.uniform(-1, 1, (batch, height, width, 3)).astype(np.float32)}
    if model.use_instance_edges:
        data["instance"] = blocky(1000)
    return data


def torch_step(config, precision: str, device: str = "cpu"):
    """PyTorch's step on the reference networks for ``config``; returns (step, G, D).

    The iteration of the reference's own trainer (``benchmarks.reference_trainer``: what it
    holds and frees, step by step). ``step()`` returns the losses, so it returns when the
    step's work is done (on a GPU too: reading them synchronizes).
    """
    from benchmarks.reference_trainer import TrainerIteration
    from spade_tf.testing import torch_reference as reference
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()

    torch.set_num_threads(os.cpu_count())
    model, train = config.model, config.train
    generator = reference.torch_generator(config).to(device)
    discriminator = reference.torch_discriminator(config).to(device)
    encoder = reference.torch_encoder(config).to(device) if model.use_vae else None
    vgg = reference.VGG19Features().to(device) if train.vgg_weight > 0 else None
    g_parameters = list(generator.parameters())
    if encoder is not None:
        g_parameters += list(encoder.parameters())
    # The reference's optimizers: Adam over G (and E) and over D, betas (beta1, beta2).
    g_optimizer = torch.optim.Adam(g_parameters, lr=train.g_learning_rate,
                                   betas=(train.beta_1, train.beta_2))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=train.d_learning_rate,
                                   betas=(train.beta_1, train.beta_2))
    autocast = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(precision)
    step = TrainerIteration(config, generator, discriminator, encoder, vgg, g_optimizer,
                            d_optimizer, fixed_batch(config), device=device,
                            autocast_dtype=autocast)
    return step, generator, discriminator


def _keras_step(config):
    """Our ``train_step`` in a tf.function; returns (step, G, D)."""
    import keras
    import tensorflow as tf

    from spade_tf.training import build_trainer
    from spade_tf.training.vgg import random_vgg_features

    keras.utils.set_random_seed(config.train.seed)
    # As spade_tf.training.train does: the policy is global, set before building.
    keras.mixed_precision.set_global_policy(config.train.mixed_precision)
    vgg = random_vgg_features() if config.train.vgg_weight > 0 else None
    trainer = build_trainer(config, vgg)
    batch = {key: tf.constant(value) for key, value in fixed_batch(config).items()}
    # What fit's train function is: train_step in a tf.function, XLA if configured.
    train_step = tf.function(trainer.train_step, jit_compile=config.train.jit_compile)

    def step() -> dict:
        return {name: float(value.numpy()) for name, value in train_step(batch).items()}

    return step, trainer.generator, trainer.discriminator


def _parameters(network) -> int:
    if hasattr(network, "trainable_weights"):
        return int(sum(np.prod(v.shape) for v in network.trainable_weights))
    return int(sum(p.numel() for p in network.parameters() if p.requires_grad))


def run_case(case: str, framework: str, precision: str, jit: bool, crop_size: int,
             repeats: int, warmup: int, quiet_wait_s: float = 0.0, extra: tuple = ()) -> dict:
    """One (case, framework, precision) in this process: build, warm up, time the steps."""
    memory = MemoryTracker()
    config = _config(case, crop_size, precision, jit, tuple(extra))
    if framework == "torch":
        step, generator, discriminator = torch_step(config, precision)
    else:
        step, generator, discriminator = _keras_step(config)
    memory.mark("built")
    losses = {}

    def one_step() -> None:
        losses.update(step())

    timing = time_calls(one_step, repeats, warmup, label=f"{case} {framework} {precision}: ",
                        between=lambda: memory.mark("warm-up"), quiet_wait_s=quiet_wait_s)
    memory.mark("timed")
    model = config.model
    return {
        "case": case, "framework": framework, "precision": precision,
        "jit_compile": config.train.jit_compile,
        "batch_size": config.train.batch_size, "image_size": list(model.image_size),
        "semantic_channels": model.semantic_channels, "vgg_weight": config.train.vgg_weight,
        "generator_parameters": _parameters(generator),
        "discriminator_parameters": _parameters(discriminator),
        **timing.as_dict(),
        "median_step_s": timing.median_ms / 1000.0,
        "examples_per_s": config.train.batch_size / (timing.median_ms / 1000.0),
        "losses_after": losses,
        "overrides": list(extra),
        "losses_finite": all(math.isfinite(value) for value in losses.values()),
        "memory": memory.as_dict(),
        "rss_after_build_mib": memory.phases["built"]["rss_mib"],
        "training_rss_increase_mib": max(0.0, memory.phases["timed"]["phase_peak_mib"]
                                         - memory.phases["built"]["rss_mib"]),
        "threads": _threads(framework),
    }


def _threads(framework: str) -> str:
    if framework == "torch":
        from spade_tf.torch_import import import_torch_beside_tensorflow

        torch = import_torch_beside_tensorflow()

        return f"PyTorch intra-op {torch.get_num_threads()}"
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return (f"TensorFlow intra-op {intra or f'default ({os.cpu_count()})'}, inter-op "
            f"{inter or 'default'}")


def _label(result: dict) -> str:
    height, width = result["image_size"]
    vgg = "VGG on" if result["vgg_weight"] > 0 else "no VGG"
    jit = " XLA" if result["jit_compile"] else ""
    framework = "PyTorch" if result["framework"] == "torch" else "ours"
    extra = "".join(f" {item}" for item in result.get("overrides", ()))
    return (f"{result['case']} {height}x{width} b{result['batch_size']} {vgg}, {framework} "
            f"{result['precision']}{jit}{extra}")


def torch_counterpart(result: dict, results: list[dict]) -> dict | None:
    """PyTorch's row for the same case and precision as one of ours (None: none, or not
    ours)."""
    if result.get("framework", "keras") != "keras":
        return None
    return next((r for r in results if r.get("framework") == "torch"
                 and r["case"] == result["case"] and r["precision"] == result["precision"]),
                None)


def report(results: list[dict], info: dict, args) -> None:
    print(machine_line(info))
    print("threads: " + ", ".join(sorted({result["threads"] for result in results})))
    print("step: ours = GauGAN.train_step (G step + D step, loss trackers) in a tf.function; "
          "PyTorch = one iteration of the reference's trainer (run_generator_one_step, then "
          "run_discriminator_one_step; what it holds and frees: benchmarks/"
          "reference_trainer.py) with torch.optim.Adam; one "
          f"fixed in-memory batch; median of the timed steps after {args.warmup} warm-up "
          "step(s); each row in a fresh process; random weights (VGG19 too)")
    print(f"median = of the quiet steps (other processes kept < {QUIET_CORES} cores busy "
          f"meanwhile); '*' where fewer than {MIN_QUIET_CALLS} were quiet and all steps are "
          "used; +train = peak RSS during the timed steps above the RSS once built")
    print()
    rows = []
    for result in results:
        torch_result = torch_counterpart(result, results)
        ratio = memory_ratio = "-"
        if torch_result is not None:
            ratio = f"{result['median_step_s'] / torch_result['median_step_s']:.2f}x"
            memory = result["memory"]["peak_rss_mib"] / torch_result["memory"]["peak_rss_mib"]
            memory_ratio = f"{memory:.2f}x"
        rows.append([_label(result), f"{result['quiet_calls']}/{len(result['times_ms'])}",
                     f"{result['median_step_s']:.3f}" + ("" if result["of_quiet"] else " *"),
                     f"{result['min_ms'] / 1000:.3f}-{result['max_ms'] / 1000:.3f}",
                     f"{result['examples_per_s']:.2f}",
                     "reference" if result["framework"] == "torch" else ratio,
                     f"{result['first_call_s']:.1f}",
                     f"{result['memory']['peak_rss_mib']:.0f}", memory_ratio,
                     f"{result['training_rss_increase_mib']:.0f}",
                     "yes" if result["losses_finite"] else "NO"])
    print(format_table(["case, framework, precision", "quiet steps", "median s/step",
                        "range s", "examples/s", "time vs PyTorch", "1st step s",
                        "peak RSS MiB", "RSS vs PyTorch", "+train MiB", "finite losses"],
                       rows))
    for result in results:
        print(f"{_label(result)}: G {result['generator_parameters']:,} and D "
              f"{result['discriminator_parameters']:,} trainable parameters; losses after "
              "the last step: " + ", ".join(f"{name} {value:.3g}" for name, value
                                            in result["losses_after"].items()))


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                        help="which cases (all)")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="train.mixed_precision values (both)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per row (demo 10, ade20k 5; --quick: 5, 2)")
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS,
                        default=list(FRAMEWORKS), help="ours (keras) and PyTorch's (both)")
    parser.add_argument("--inter-op-threads", type=int, default=None,
                        help="TensorFlow's inter-op thread pool size for our rows (default: "
                             "TensorFlow's; 1 trades nothing in speed for less memory on a "
                             "CPU, see the README)")
    parser.add_argument("--jit", action="store_true",
                        help="also time the XLA-compiled step (train.jit_compile=true)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="one more config override for every row, e.g. --set "
                             "train.ema_decay=0.999 (ours with the averaged generator); "
                             "repeatable")
    add_timing_arguments(
        parser, "step", crop_help="ADE20K image side (256; 128 with --quick)",
        quick_help="ADE20K at 128x128 and fewer steps: the code path in minutes")
    add_json_argument(parser)
    parser.add_argument("--worker", nargs=4, metavar=("CASE", "FRAMEWORK", "PRECISION", "JIT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    resolve_timing_arguments(parser, args, "step")

    def repeats(case: str) -> int:
        return args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)[case]

    if args.worker:
        case, framework, precision, jit = args.worker
        if args.inter_op_threads and framework == "keras":
            import tensorflow as tf

            tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
        emit_worker_result(run_case(case, framework, precision, jit == "1", args.crop_size,
                                    repeats(case), args.warmup, args.quiet_wait,
                                    tuple(args.overrides)))
        return

    info = machine()
    results = []
    # XLA is ours only; PyTorch's step has no such switch.
    rows = [(case, framework, precision, jit) for case in args.cases
            for framework in args.frameworks for precision in args.precisions
            for jit in ((False, True) if args.jit and framework == "keras" else (False,))]
    for case, framework, precision, jit in rows:
        progress(f"{case} {framework} {precision}{' XLA' if jit else ''} in a fresh process")
        result = run_worker([__file__, "--worker", case, framework, precision, int(jit),
                             "--crop-size", args.crop_size, "--warmup", args.warmup,
                             "--quiet-wait", args.quiet_wait,
                             *(["--repeats", args.repeats] if args.repeats else []),
                             *(["--inter-op-threads", args.inter_op_threads]
                               if args.inter_op_threads else []),
                             *(["--quick"] if args.quick else []),
                             *[item for value in args.overrides for item in ("--set", value)]])
        progress(f"{_label(result)}: median {result['median_step_s']:.3f} s/step")
        results.append(result)
    info["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    report(results, info, args)
    write_json(args.json, {"benchmark": "training_step", "machine": info,
                           "warmup": args.warmup, "results": results})


if __name__ == "__main__":
    run_script(main)
