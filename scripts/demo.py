"""The demo behind `make demo`: label map in, photo out, on a CPU with no data.

Today it builds the generator of ``configs/demo.yaml`` (untrained: the demo shows the
pipeline, not a learned model), draws a synthetic scene's label map, synthesizes an
image from it and writes ``label | generated | real`` side by side as a PNG.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def stage(name: str):
    """Print a stage header; a failure inside names the stage and exits non-zero."""

    class _Stage:
        def __enter__(self):
            print(f"[demo] {name} ...", flush=True)
            self.start = time.perf_counter()

        def __exit__(self, kind, error, traceback):
            if error is not None and kind is not SystemExit:
                print(f"[demo] FAILED at stage '{name}': {kind.__name__}: {error}",
                      file=sys.stderr, flush=True)
                raise SystemExit(1) from error
            print(f"[demo] {name}: done in {time.perf_counter() - self.start:.1f}s", flush=True)

    return _Stage()


def colorize(label: np.ndarray, palette: np.ndarray) -> np.ndarray:
    return palette[label].astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--out", default="demo_output", help="folder for the PNG")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with stage("load config and build the generator"):
        import tensorflow as tf

        from spade_tf.config import load_config
        from spade_tf.models import build_generator, build_semantic_input
        from tfrecords_tools import synthetic

        config = load_config(args.config)
        generator = build_generator(config.model)
        semantic_input = build_semantic_input(config.model)
        height, width = config.model.image_size
        print(f"[demo] generator: {generator.count_params():,} parameters, "
              f"{height}x{width} images from {config.model.semantic_channels} semantic channels")

    with stage("draw a synthetic label map"):
        scene = synthetic.generate_scene(synthetic.scene_rng(args.seed, 0), size=width)
        label = scene.label[:height]
        instance = scene.instance[:height]

    with stage("synthesize"):
        instances = tf.constant(instance[None], tf.int32) if config.model.use_instance_edges \
            else None
        semantic = semantic_input(tf.constant(label[None], tf.int32), instances)
        inputs = {"semantic": semantic}
        if config.model.use_vae:
            inputs["latent"] = tf.random.stateless_normal(
                (1, config.model.latent_dim), seed=(args.seed, 0))
        image = generator(inputs, training=False).numpy()[0]
        generated = np.round((image + 1.0) * 127.5).clip(0, 255).astype(np.uint8)

    with stage("write the PNG"):
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        palette = synthetic.BASE_COLORS.astype(np.uint8)
        grid = np.concatenate([colorize(label, palette), generated, scene.image[:height]], axis=1)
        path = out_dir / "demo.png"
        Image.fromarray(grid).save(path)
        print(f"[demo] wrote {path.resolve()} (label | generated | real, {grid.shape[1]}x"
              f"{grid.shape[0]}); generated pixel range {generated.min()}..{generated.max()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
