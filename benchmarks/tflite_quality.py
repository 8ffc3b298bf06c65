"""What quantization does to a trained generator's images: TFLite float16 and int8 against
the float32 SavedModel, in uint8 levels, and a picture of them side by side.

Random weights say little here (a random generator's image sits at tanh's ends), so this
takes a trained model folder, e.g. the one ``make demo`` leaves in ``demo_output/run``,
and a folder of its label maps (with their instance maps where the model uses them):

    python benchmarks/tflite_quality.py --model-dir demo_output/run \\
        --labels demo_output/scenes/held_out/labels \\
        --instances demo_output/scenes/held_out/instances --picture docs/tflite-int8.png

It exports the model folder once as a SavedModel and as ``.tflite`` in float32, float16
and int8, runs every map through each (``spade-synthesize``'s back ends, VAE models at
seed 0) and prints each file's level differences from the SavedModel's image: largest,
mean, and the share of pixels off by more than 8 levels. The picture's rows are maps; its
columns: the label map in the class colours, the SavedModel's image, float32, float16,
int8, and int8's difference from the SavedModel's, 16x brighter.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    add_json_argument,
    format_table,
    machine,
    machine_line,
    progress,
    run_script,
    script_parser,
    write_json,
)

QUANTIZATIONS = ("float32", "float16", "int8")
FAR_LEVELS = 8  # off by more than this many levels: visible to a careful eye
PICTURE_ROW_HEIGHT = 128
DIFFERENCE_GAIN = 16  # a few levels, made visible


def synthesize_all(model_dir: Path, labels: Path, instances: Path | None, limit: int,
                   work: Path) -> tuple[list, dict[str, np.ndarray]]:
    """(label maps in colours, {variant: uint8 images [N, H, W, 3]})."""
    from spade_tf.export import export_model
    from spade_tf.map_files import list_map_files, load_map
    from spade_tf.synthesis_backends import SavedModelBackend, TFLiteBackend
    from spade_tf.tflite import export_tflite

    progress(f"exporting {model_dir} as a SavedModel")
    backends = {"saved_model": SavedModelBackend(
        export_model(model_dir, work, "model", warmup=False, precision="float32"))}
    info = backends["saved_model"].info
    # The maps read and checked before the slower exports: a wrong folder fails now.
    maps = [load_map(item, info, resize=None)
            for item in list_map_files(labels, instances, info.use_instance_edges)[:limit]]
    for quantization in QUANTIZATIONS:
        progress(f"exporting {model_dir} as {quantization} .tflite")
        backends[quantization] = TFLiteBackend(export_tflite(model_dir, work, "model",
                                                             quantization))
    seed = 0 if info.use_vae else None
    images = {variant: np.concatenate([
        backend.synthesize(loaded.labels[None], None if loaded.instances is None
                           else loaded.instances[None], seed, None) for loaded in maps])
        for variant, backend in backends.items()}
    return [info.classes.colorize(loaded.labels) for loaded in maps], images


def level_differences(images: dict[str, np.ndarray]) -> dict[str, dict]:
    reference = images["saved_model"].astype(int)
    figures = {}
    for quantization in QUANTIZATIONS:
        difference = np.abs(images[quantization].astype(int) - reference)
        figures[quantization] = {"max_levels": int(difference.max()),
                                 "mean_levels": float(difference.mean()),
                                 "share_far": float((difference > FAR_LEVELS).mean())}
    return figures


def write_picture(path: Path, coloured: list, images: dict[str, np.ndarray]) -> None:
    from spade_tf.png import write_png
    from spade_tf.visualize import contact_sheet

    rows = []
    for index, labels in enumerate(coloured):
        difference = np.abs(images["int8"][index].astype(int)
                            - images["saved_model"][index].astype(int))
        rows.append([labels, images["saved_model"][index],
                     *(images[q][index] for q in QUANTIZATIONS),
                     np.clip(difference * DIFFERENCE_GAIN, 0, 255).astype(np.uint8)])
    write_png(path, contact_sheet(rows, row_height=PICTURE_ROW_HEIGHT),
              text={"Software": "benchmarks/tflite_quality.py"})


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--model-dir", type=Path, required=True,
                        help="a trained model folder (make demo: demo_output/run)")
    parser.add_argument("--labels", type=Path, required=True, help="a folder of label maps")
    parser.add_argument("--instances", type=Path, help="their instance maps, if the model "
                        "uses them")
    parser.add_argument("--maps", type=int, default=4, help="maps to use (4)")
    parser.add_argument("--picture", type=Path, help="write the side-by-side PNG here")
    add_json_argument(parser)
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="spade-tflite-quality-") as work:
        coloured, images = synthesize_all(args.model_dir, args.labels, args.instances,
                                          args.maps, Path(work))
    figures = level_differences(images)
    print(machine_line(info))
    print(f"{args.model_dir}: {len(coloured)} maps, {images['saved_model'].shape[1]}x"
          f"{images['saved_model'].shape[2]}; uint8 levels against the float32 SavedModel")
    print(format_table(["file", "max levels", "mean levels", f"pixels off > {FAR_LEVELS}"],
                       [(q, f["max_levels"], f"{f['mean_levels']:.2f}",
                         f"{100 * f['share_far']:.2f}%") for q, f in figures.items()],
                       align="lrrr"))
    if args.picture:
        write_picture(args.picture, coloured, images)
        print(f"picture: {args.picture} (label | SavedModel | float32 | float16 | int8 | "
              f"int8's difference x{DIFFERENCE_GAIN})")
    write_json(args.json, {"benchmark": "tflite_quality", "machine": info,
                           "model_dir": str(args.model_dir), "maps": len(coloured),
                           "results": figures})


if __name__ == "__main__":
    run_script(main)
