"""Generator inference on each Keras backend: TensorFlow, JAX and PyTorch, same weights.

ADE20K's generator at 256x256 (configs/ade20k.yaml), batch 1, float32, on this machine's
CPU. The TensorFlow process builds it and saves a ``.keras`` file; a process per backend
(``KERAS_BACKEND``) loads that file and times ``--repeats`` calls after ``--warmup``:

- ``tensorflow``: the model in a ``tf.function`` (as the ``function`` row of
  generator_vs_torch.py);
- ``jax``: ``jax.jit`` of the model's ``stateless_call``;
- ``torch``: the eager call under ``torch.inference_mode()``. Keras runs PyTorch eagerly
  unless ``jit_compile=True`` in ``compile`` (``torch.compile``), which this does not time.

Also printed: each backend's difference from TensorFlow's output before the final tanh,
relative to its largest value (the untrained image itself is mostly +-1 exactly). The median
uses the quiet calls (see benchmarks/common.py).

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

BACKENDS = ("tensorflow", "jax", "torch")
MODES = {"tensorflow": "tf.function", "jax": "jax.jit", "torch": "eager"}


def _timed_call(model, semantic: np.ndarray):
    """A call returning the image as NumPy, compiled as the backend compiles."""
    import keras

    backend = keras.backend.backend()
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

        changes = [f"model.crop_size={args.crop_size}", f"model.base_filters={args.base_filters}"]
        config = load_config(Path(__file__).resolve().parent.parent / "configs" / "ade20k.yaml",
                             changes).model
        keras.utils.set_random_seed(0)
        generator = build_generator(config)
        generator.save(work / "generator.keras")
        rng = np.random.default_rng(0)
        height, width = generator.image_height, generator.image_width
        labels = rng.integers(0, config.num_classes, (1, height // 16, width // 16))
        labels = labels.repeat(16, 1).repeat(16, 2)  # blocks of a class, as label maps are
        np.save(work / "semantic.npy",
                np.eye(generator.semantic_channels, dtype=np.float32)[labels])
    model = keras.saving.load_model(work / "generator.keras")
    semantic = np.load(work / "semantic.npy")
    call = _timed_call(model, semantic)
    label = f"{keras.backend.backend()}: "
    timing = time_calls(call, args.repeats, args.warmup, label=label,
                        quiet_wait_s=args.quiet_wait)
    # Compared before the tanh: an untrained generator's image is mostly +-1 exactly.
    before_tanh = keras.Model(model.inputs, model.get_layer("conv_img").output)
    np.save(work / f"image_{keras.backend.backend()}.npy", keras.ops.convert_to_numpy(
        before_tanh({"semantic": keras.ops.convert_to_tensor(semantic)}, training=False)))
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
        for backend in BACKENDS:  # TensorFlow first: it writes the model
            os.environ["KERAS_BACKEND"] = backend
            results[backend] = run_worker([__file__, "--worker", backend, *common])
        images = {backend: np.load(Path(work) / f"image_{backend}.npy") for backend in BACKENDS}
    for backend in BACKENDS:
        # Relative: untrained, batch norm's moving statistics (0 and 1) normalize nothing,
        # so activations grow block after block.
        results[backend]["max_relative_vs_tensorflow"] = float(
            np.max(np.abs(images[backend] - images["tensorflow"]))
            / np.max(np.abs(images["tensorflow"])))
    base = results["tensorflow"]["median_ms"]
    rows = [(backend, MODES[backend], f"{result['median_ms']:.0f}",
             f"{result['median_ms'] / base:.2f}x", f"{result['first_call_s']:.1f}",
             f"{result['max_relative_vs_tensorflow']:.1e}") for backend, result in results.items()]
    print(machine_line(info))
    print(f"ADE20K generator, {args.crop_size}x{args.crop_size}, base_filters "
          f"{args.base_filters}, batch 1, float32")
    print(format_table(["backend", "call", "median ms", "vs TF", "first call s",
                        "max |x - TF| / max |TF|, before tanh"], rows, align="llrrrr"))
    write_json(args.json, {"machine": info, "setup": {
        "crop_size": args.crop_size, "base_filters": args.base_filters,
        "repeats": args.repeats, "warmup": args.warmup}, "results": results})


if __name__ == "__main__":
    run_script(main)
