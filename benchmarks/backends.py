"""Generator inference on each Keras backend: TensorFlow, JAX and PyTorch, same weights.

ADE20K's generator at 256x256 (configs/ade20k.yaml), batch 1, float32, on this machine's
CPU. The TensorFlow process builds it and saves a ``.keras`` file; a process per backend
(``KERAS_BACKEND``) loads that file and times ``--repeats`` calls after ``--warmup``:

- ``tensorflow``: the model in a ``tf.function`` (as the ``function`` row of
  generator_vs_torch.py);
- ``jax``: ``jax.jit`` of the model's ``stateless_call``;
- ``torch`` eager: the call under ``torch.inference_mode()``, as Keras runs PyTorch unless
  told otherwise;
- ``torch`` torch.compile: ``compile(jit_compile=True)`` then ``predict_on_batch``, which
  Keras runs through ``torch.compile`` (inductor; the first call compiles, a minute or more).

The batch norms' statistics are those of the timed input (re-estimated on it before saving,
as ``train.ema_bn_batches`` does), as a trained generator's are of its data: untrained
statistics (0 and 1) normalize nothing and the image is +-1 almost everywhere. Also
printed: each row's largest difference from TensorFlow's image. The median uses the quiet
calls (benchmarks/common.py).

    python benchmarks/backends.py [--repeats 5] [--warmup 2] [--json OUT]
    python benchmarks/backends.py --quick      # 128x128, base_filters 16, 3 repeats
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
    time_calls,
    write_json,
)

# (backend, how its call runs); TensorFlow first: it writes the model.
ROWS = (("tensorflow", "tf.function"), ("jax", "jax.jit"), ("torch", "eager"),
        ("torch", "torch.compile"))


def _timed_call(model, semantic: np.ndarray, mode: str):
    """A call returning the image as NumPy, compiled as ``mode`` says."""
    import keras

    backend = keras.backend.backend()
    if mode == "torch.compile":
        model.compile(jit_compile=True)  # Keras's predict function under torch.compile
        return lambda: np.asarray(model.predict_on_batch({"semantic": semantic}))
    if backend == "tensorflow":
        import tensorflow as tf

        function = tf.function(lambda x: model({"semantic": x}, training=False))
        tensor = tf.constant(semantic)
        return lambda: function(tensor).numpy()
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        frozen = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def function(x):
            return model.stateless_call(trainable, frozen, {"semantic": x}, training=False)[0]

        array = jax.numpy.asarray(semantic)
        return lambda: np.asarray(function(array))
    from spade_tf.torch_import import import_torch_beside_tensorflow

    torch = import_torch_beside_tensorflow()  # Triton kept out (the rule)

    tensor = torch.from_numpy(semantic)

    def call():
        with torch.inference_mode():
            return model({"semantic": tensor}, training=False).numpy()

    return call


def worker(args) -> None:
    """One backend: load (TensorFlow: build and save first), time, report."""
    import keras

    import spade_tf.models  # noqa: F401 (registers the classes)

    work = Path(args.work)
    if keras.backend.backend() == "tensorflow":
        from spade_tf.config import load_config
        from spade_tf.models import build_generator
        from spade_tf.training.ema import reestimate_batch_norm, reestimation_step

        changes = [f"model.crop_size={args.crop_size}", f"model.base_filters={args.base_filters}"]
        config = load_config(Path(__file__).resolve().parent.parent / "configs" / "ade20k.yaml",
                             changes).model
        keras.utils.set_random_seed(0)
        generator = build_generator(config)
        rng = np.random.default_rng(0)
        height, width = generator.image_height, generator.image_width
        labels = rng.integers(0, config.num_classes, (1, height // 16, width // 16))
        labels = labels.repeat(16, 1).repeat(16, 2)  # blocks of a class, as label maps are
        semantic = np.eye(generator.semantic_channels, dtype=np.float32)[labels]
        # The statistics of this input, as a trained generator's are of its data.
        reestimate_batch_norm(generator, [semantic], reestimation_step(
            generator, lambda batch: {"semantic": batch}))
        generator.save(work / "generator.keras")
        np.save(work / "semantic.npy", semantic)
    model = keras.saving.load_model(work / "generator.keras")
    semantic = np.load(work / "semantic.npy")
    call = _timed_call(model, semantic, args.mode)
    label = f"{keras.backend.backend()} {args.mode}: "
    timing = time_calls(call, args.repeats, args.warmup, label=label,
                        quiet_wait_s=args.quiet_wait)
    np.save(work / f"image_{args.worker}_{args.mode}.npy", call())
    emit_worker_result(timing.as_dict())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (5; 3 --quick)")
    parser.add_argument("--base-filters", type=int, default=None,
                        help="the generator's base_filters (64; 16 with --quick)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    add_timing_arguments(parser, "call", "output width (256; 128 with --quick)",
                         "128x128, base_filters 16, 3 repeats, 1 warm-up")
    add_json_argument(parser)
    args = parser.parse_args()
    resolve_timing_arguments(parser, args, "call")
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.base_filters = args.base_filters or (16 if args.quick else 64)
    if args.worker:
        worker(args)
        return

    info = machine()
    progress(machine_line(info))
    results = {}
    with tempfile.TemporaryDirectory(prefix="spade-backends-") as work:
        common = ["--work", work, "--crop-size", args.crop_size, "--base-filters",
                  args.base_filters, "--repeats", args.repeats, "--warmup", args.warmup,
                  "--quiet-wait", args.quiet_wait]
        for backend, mode in ROWS:
            os.environ["KERAS_BACKEND"] = backend
            result = run_worker([__file__, "--worker", backend, "--mode", mode, *common])
            image = np.load(Path(work) / f"image_{backend}_{mode}.npy").astype(np.float64)
            if backend == "tensorflow":
                tensorflow_image = image
            result["max_vs_tensorflow"] = float(np.max(np.abs(image - tensorflow_image)))
            results[f"{backend} {mode}"] = result
    base = results["tensorflow tf.function"]["median_ms"]
    rows = [(*row.split(" "), f"{result['median_ms']:.0f}",
             f"{result['median_ms'] / base:.2f}x", f"{result['first_call_s']:.1f}",
             f"{result['max_vs_tensorflow']:.1e}") for row, result in results.items()]
    print(machine_line(info))
    print(f"ADE20K generator, {args.crop_size}x{args.crop_size}, base_filters "
          f"{args.base_filters}, batch 1, float32")
    print(format_table(["backend", "call", "median ms", "vs TF", "first call s",
                        "max |image - TF's|"], rows, align="llrrrr"))
    write_json(args.json, {"machine": info, "setup": {
        "crop_size": args.crop_size, "base_filters": args.base_filters,
        "repeats": args.repeats, "warmup": args.warmup}, "results": results})


if __name__ == "__main__":
    run_script(main)
