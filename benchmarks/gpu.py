"""Accelerator throughput: images/s of the generator and of training steps, ours and PyTorch's.

On a machine with GPUs (``tf.config.list_physical_devices("GPU")``):

- generator inference, ADE20K at 256x256, batch ``--batch`` (8): ours in float32,
  bfloat16 and float16 (``spade_tf.fold_for_inference``, in a ``tf.function``) and float32
  and bfloat16 under XLA (``jit_compile=True``); PyTorch's generator (the parity tests'
  reference, same converted-from structure, random weights) in float32 and under
  ``torch.autocast`` bfloat16 and float16 on ``cuda:0``;
- training steps (G step + D step, VGG on, batch ``--batch`` per GPU), ours under
  ``tf.distribute.MirroredStrategy`` on 1 GPU and on every GPU with ``mixed_bfloat16``
  and ``mixed_float16``; PyTorch's reference step (``ReferenceGauGAN``) on one GPU under
  autocast.

Without a GPU the same code runs on the CPU in a quick mode (the demo config at 64x64,
2 logical CPU devices for the "all devices" strategy, 2 timed calls): it checks the script,
not the speed (the CPU figures are benchmarks/generator_vs_torch.py's and
training_step.py's). ``--quick`` forces that mode on a GPU machine too.

    python benchmarks/gpu.py [--batch 8] [--repeats 10] [--quick] [--json OUT]
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tensorflow as tf  # noqa: E402

from benchmarks.common import (  # noqa: E402
    add_json_argument,
    format_table,
    machine,
    machine_line,
    progress,
    run_script,
    script_parser,
    time_calls,
    write_json,
)
from benchmarks.training_step import fixed_batch, torch_step  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
GPUS = tf.config.list_physical_devices("GPU")
if not GPUS:
    # Two logical CPUs stand in for "every device" (before TensorFlow initializes).
    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def _config(quick: bool, precision: str = "float32", batch: int = 1):
    from spade_tf.config import load_config

    if quick:
        return load_config(CONFIGS / "demo.yaml", [f"train.batch_size={batch}",
                                                   f"train.mixed_precision={precision}"])
    return load_config(CONFIGS / "ade20k.yaml", [
        "model.crop_size=256", f"train.batch_size={batch}", "train.vgg_weight=10.0",
        f"train.mixed_precision={precision}"])


def _figure(name: str, timing, images: int, **extra) -> dict:
    seconds = timing.median_ms / 1000.0
    return {"name": name, "median_ms": timing.median_ms, "images_per_s": images / seconds,
            "first_call_s": timing.first_s, **extra}


# -- ours ------------------------------------------------------------------------------


def keras_generator(args) -> list[dict]:
    from spade_tf.inference_loader import fold_for_inference
    from spade_tf.models import build_generator, build_semantic_input

    config = _config(args.quick, batch=args.batch)
    model = config.model
    data = fixed_batch(config)
    semantic = build_semantic_input(model)(data["label"], data.get("instance"))
    generator = build_generator(model)
    figures = []
    cases = [("float32", False), ("bfloat16", False), ("float32", True), ("bfloat16", True)]
    if GPUS and not args.quick:
        cases.insert(2, ("float16", False))  # emulated, and slow, on a CPU
    for precision, xla in cases:
        folded = fold_for_inference(generator, precision)
        forward = tf.function(lambda x, g=folded: g({"semantic": x}, training=False),
                              jit_compile=xla)
        name = f"ours {precision}{' XLA' if xla else ''}"
        timing = time_calls(lambda f=forward: f(semantic).numpy(), args.repeats,
                            args.warmup, label=f"{name}: ")
        figures.append(_figure(name, timing, args.batch))
    return figures


def keras_training(args) -> list[dict]:
    from spade_tf.training import build_trainer
    from spade_tf.training.vgg import random_vgg_features

    devices = [d.name for d in tf.config.list_logical_devices("GPU" if GPUS else "CPU")]
    precisions = ["mixed_bfloat16"] + (["mixed_float16"] if GPUS and not args.quick else [])
    figures = []
    import keras

    for precision in precisions:
        for count in sorted({1, len(devices)}):
            strategy = tf.distribute.MirroredStrategy(devices[:count])
            config = _config(args.quick, precision, args.batch * count)
            keras.mixed_precision.set_global_policy(precision)
            with strategy.scope():
                vgg = random_vgg_features() if config.train.vgg_weight > 0 else None
                trainer = build_trainer(config, vgg)
            keras.mixed_precision.set_global_policy("float32")
            dataset = tf.data.Dataset.from_tensors(fixed_batch(config)).repeat()
            iterator = iter(strategy.experimental_distribute_dataset(dataset))

            @tf.function
            def step(trainer=trainer, strategy=strategy, iterator=iterator):
                logs = strategy.run(trainer.train_step, args=(next(iterator),))
                return strategy.reduce("MEAN", logs["g_total"], axis=None)

            name = f"ours {precision}, {count} device{'s' if count > 1 else ''}"
            timing = time_calls(lambda s=step: float(s()), args.repeats, args.warmup,
                                label=f"{name}: ")
            figures.append(_figure(name, timing, config.train.batch_size,
                                   devices=count))
    return figures


# -- PyTorch ---------------------------------------------------------------------------


def _torch_device():
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()

    return torch.device("cuda:0" if GPUS and torch.cuda.is_available() else "cpu")


def _synchronize(device) -> None:
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torch_generator(args) -> list[dict]:
    from spade_tf.testing import torch_reference as reference
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()

    device = _torch_device()
    config = _config(args.quick, batch=args.batch)
    model = config.model
    network = reference.torch_generator(config).to(device).eval()
    data = fixed_batch(config)
    semantic = reference.semantic_one_hot(
        data["label"], model.num_classes,
        model.dontcare_label if model.use_dontcare_label else None,
        data.get("instance")).to(device)
    dtypes = [("float32", None), ("bfloat16", torch.bfloat16)]
    if device.type == "cuda":
        dtypes.append(("float16", torch.float16))
    figures = []
    for precision, dtype in dtypes:
        autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())

        def call(autocast=autocast) -> None:
            with torch.inference_mode(), autocast:
                network(semantic)
            _synchronize(device)

        name = f"PyTorch {precision}" + (" autocast" if dtype is not None else "")
        timing = time_calls(call, args.repeats, args.warmup, label=f"{name}: ")
        figures.append(_figure(name, timing, args.batch, device=str(device)))
    return figures


def torch_training(args) -> list[dict]:
    """PyTorch's reference step (benchmarks/training_step.py's) on one device."""
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()

    device = _torch_device()
    precisions = ["mixed_bfloat16"] + (["mixed_float16"] if device.type == "cuda" else [])
    figures = []
    for precision in precisions:
        step, _, _ = torch_step(_config(args.quick, precision, args.batch), precision,
                                str(device))
        name = f"PyTorch autocast {precision.removeprefix('mixed_')}, 1 device"
        timing = time_calls(step, args.repeats, args.warmup, label=f"{name}: ")
        figures.append(_figure(name, timing, args.batch, devices=1, device=str(device)))
        del step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return figures


def device_names() -> list[str]:
    if not GPUS:
        return ["CPU (no GPU: quick mode)"]
    names = []
    for gpu in GPUS:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names


def main(argv: list[str] | None = None) -> dict:
    parser = script_parser(__doc__)
    parser.add_argument("--batch", type=int, default=None,
                        help="images per call and per device in training (8; 2 on a CPU)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per row (10; 2 on a CPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per row (2)")
    parser.add_argument("--quick", action="store_true",
                        help="the CPU quick mode's sizes even on a GPU machine")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch's rows")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    args.quick = args.quick or not GPUS
    args.batch = args.batch or (2 if args.quick else 8)
    args.repeats = args.repeats or (2 if args.quick else 10)
    info = machine()
    info["accelerators"] = device_names()
    progress(f"devices: {', '.join(info['accelerators'])}")
    sections = {"generator": keras_generator(args), "training": keras_training(args)}
    if not args.no_torch:
        sections["generator"] += torch_generator(args)
        sections["training"] += torch_training(args)
    print(machine_line(info))
    print(f"accelerators: {', '.join(info['accelerators'])}; "
          + ("quick mode (demo config, 64x64): a check of the script, not a speed figure"
             if args.quick else "ADE20K 256x256, VGG on in training"))
    for section, figures in sections.items():
        print()
        print(format_table([f"{section} (batch {args.batch})", "median ms", "images/s",
                             "1st call s"],
                            [[f["name"], f"{f['median_ms']:.1f}", f"{f['images_per_s']:.2f}",
                              f"{f['first_call_s']:.1f}"] for f in figures]))
    result = {"benchmark": "gpu", "machine": info, "quick": args.quick, "batch": args.batch,
              **sections}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    run_script(main)
