"""``spade-synthesize``: label maps in, images out, from a model folder, an export or a server.

One process for any number of files: the model is loaded (or the server reached) once,
maps are batched, images are written atomically and named after their maps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spade_cli.app import (
    UsageError,
    add_precision_option,
    add_weights_option,
    new_parser,
    run,
)
from spade_tf import signatures as sig
from spade_tf.progress import ProgressLine

EXAMPLES = """examples:
  spade-synthesize --model-dir runs/ade20k --labels maps/ --out images/
  spade-synthesize --export exports/spade/3 --labels maps/ --out images/ --grid grid.png
  spade-synthesize --server 127.0.0.1:8500 --labels label.png --instances inst.png \\
      --seed 3 --out out.png
  spade-synthesize --model-dir runs/demo --labels maps/ --instances insts/ --out images/ \\
      --resize back --html
Label and instance maps are single-channel PNGs of class ids (8- or 16-bit grayscale, or
palette), the ids of the model's dataset; outputs keep the maps' relative names."""
PROGRESS_SECONDS = 2.0
# Marks on the contact sheet (a PNG text chunk) and the index page (a meta tag): files
# this tool wrote may be rewritten, anybody else's are refused unless --overwrite.
TOOL = "spade-synthesize"
PAGE_MARK = f'<meta name="generator" content="{TOOL}">'
PAGE_ROW_HEIGHT = 256  # pixels; each picture as wide as its own aspect ratio makes it


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("spade-synthesize",
                        "Synthesize images from label maps with a model folder, an exported "
                        "SavedModel, a .tflite file or a running server.", EXAMPLES)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", help="a model folder (spade-train, spade-convert-torch)")
    source.add_argument("--export", metavar="VERSION_DIR",
                        help="an exported version folder, e.g. exports/spade/3")
    source.add_argument("--server", metavar="HOST:PORT", help="spade-serve or TF Serving (gRPC)")
    source.add_argument("--tflite", metavar="FILE",
                        help="a .tflite file of spade-export --format tflite (LiteRT's "
                             "interpreter on the CPU, as on a device)")
    parser.add_argument("--checkpoint", metavar="latest|STEP",
                        help="with --model-dir: a training checkpoint's weights instead of the "
                             "last finished epoch's networks")
    add_precision_option(parser, "with --model-dir: ")
    add_weights_option(parser, "with --model-dir: ")
    parser.add_argument("--labels", "--label", required=True, dest="labels",
                        help="a label map, or a folder of them (searched recursively)")
    parser.add_argument("--instances", "--instance", dest="instances",
                        help="the matching instance map(s), for models with instance edges")
    parser.add_argument("--out", required=True,
                        help="folder for the images (or, for one --labels file, an image file "
                             "ending in .png)")
    style = parser.add_mutually_exclusive_group()
    style.add_argument("--style", help="a photo whose style to copy (VAE models)")
    style.add_argument("--seed", type=int, help="a style seed, for reproducible images (VAE)")
    parser.add_argument("--batch-size", type=int,
                        help="maps per call (default: the model's export.max_batch_size)")
    parser.add_argument("--resize", choices=("model", "back"),
                        help="maps of another size: resize them to the model's (nearest, ids "
                             "kept); 'back' writes each image at its map's size (bicubic)")
    parser.add_argument("--grid", metavar="PNG",
                        help="also write a contact sheet: label map | image, a row per map")
    parser.add_argument("--html", action="store_true",
                        help="also write OUT/index.html (label map and image side by side)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files: images in a --out folder (kept by "
                             "default), a --out image file, and a --grid or index.html "
                             "spade-synthesize did not write (refused by default)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unusable maps (listed at the end) instead of stopping")
    parser.add_argument("--allow-lossy", action="store_true",
                        help="accept JPEG maps (their compression changes ids at region edges)")
    parser.add_argument("--model-name", default="spade",
                        help="with --server: the served model's name (spade)")
    parser.add_argument("--version", type=int,
                        help="with --server: a model version (default: the served one)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="with --server: seconds per call, retries included (60)")
    return parser


# -- the server back end ---------------------------------------------------------------------


class ServerBackend:
    """A served model (spade-serve or TF Serving) as a synthesis back end."""

    def __init__(self, client, version: int | None):
        import json

        import numpy as np

        from spade_tf.export_metadata import ExportMetadata
        from spade_tf.synthesis_backends import ModelInfo

        self._client, self._version = client, version
        answer = client.predict({sig.MODEL_INFO_REQUEST: np.zeros(1, np.int32)},
                                sig.MODEL_INFO_SIGNATURE, version)
        metadata = json.loads(answer.outputs[sig.METADATA_JSON].item())
        self.info = ModelInfo.from_metadata(ExportMetadata.from_dict(metadata, "model_info"))

    def synthesize(self, labels, instances, seed, style):
        images = self._client.synthesize(labels, instances, seed=seed, style_image=style,
                                         version=self._version)
        return images if images.ndim == 4 else images[None]


def _served_error(error, args: argparse.Namespace) -> UsageError:
    """A refusal of the server, with what to do for the usual causes."""
    import grpc

    code, text = error.code, str(error)
    if code == grpc.StatusCode.UNAVAILABLE and any(
            sign in text for sign in ("http1.x server", "Failed parsing HTTP/2")):
        # What gRPC core says when an HTTP/1.1 server answers its HTTP/2 preface.
        return UsageError(f"{args.server} answers HTTP/1.1, not gRPC: it looks like a REST port "
                          f"(spade-serve --rest-port, TF Serving's {sig.DEFAULT_REST_PORT}); give "
                          f"--server the gRPC port (spade-serve --port, TF Serving's "
                          f"{sig.DEFAULT_GRPC_PORT}).")
    if code == grpc.StatusCode.UNAVAILABLE:
        return UsageError(f"no server answers at {args.server} ({text}); start one (spade-serve "
                          "--model-base-path exports/spade) or check --server.")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UsageError(f"no answer from {args.server} within --timeout {args.timeout:g} s "
                          f"({text}); check --server, or allow more time.")
    hints = [(f'"{sig.MODEL_INFO_SIGNATURE}" not found', "the model was exported by an older "
              "spade-export without it: export it again, or use --export with its folder"),
             (f"missing ['{sig.INSTANCE_IDS}']", "this model uses instance maps: add --instances"),
             (f"not in the signature ['{sig.INSTANCE_IDS}']",
              "this model takes no instance map: drop --instances"),
             (f'"{sig.SEEDED_SIGNATURE}" not found', "this model has no style input (not a VAE "
              "model): drop --seed"),
             (f'"{sig.STYLE_SIGNATURE}" not found', "this model has no style input (not a VAE "
              "model): drop --style")]
    for words, hint in hints:
        if words in error.message:
            return UsageError(f"{text} ({hint})")
    return UsageError(text)


# -- checks that need no model ---------------------------------------------------------------


def _check_arguments(args: argparse.Namespace) -> None:
    if args.server is not None:
        host, _, port = args.server.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--server {args.server}: expected HOST:PORT, e.g. 127.0.0.1:8500.")
        if not args.timeout > 0:
            raise UsageError(f"--timeout {args.timeout}: expected a positive number of seconds.")
        if args.version is not None and args.version < 1:
            raise UsageError(f"--version {args.version}: versions are positive integers.")
    elif args.version is not None:
        raise UsageError("--version picks a served version: it goes with --server (for an "
                         "export, give its version folder to --export).")
    if args.precision is not None and args.model_dir is None:
        raise UsageError("--precision picks how a model folder's generator is stored and run: "
                         "it goes with --model-dir (an export keeps the precision it was "
                         "exported at: spade-export --precision).")
    if args.checkpoint is not None and args.model_dir is None:
        raise UsageError("--checkpoint picks a training checkpoint of a model folder: it goes "
                         "with --model-dir.")
    if args.weights is not None and args.model_dir is None:
        raise UsageError("--weights picks a model folder's generator (averaged or raw): it "
                         "goes with --model-dir (an export keeps the weights it was exported "
                         "with: spade-export --weights).")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: expected a positive number of maps.")
    if not Path(args.labels).exists():
        raise UsageError(f"--labels {args.labels} does not exist.")
    if args.instances is not None and not Path(args.instances).exists():
        raise UsageError(f"--instances {args.instances} does not exist.")
    if args.grid is not None and Path(args.grid).suffix.lower() != ".png":
        raise UsageError(f"--grid {args.grid}: the contact sheet is a PNG; end the name with "
                         ".png.")
    out = Path(args.out)
    if Path(args.labels).is_file():  # one map -> one named image file
        if out.is_dir():
            raise UsageError(f"--out {out} is a folder: give the image file to write, e.g. "
                             f"{out / (Path(args.labels).stem + '.png')} (a folder of maps in "
                             "--labels writes a folder of images).")
        if out.suffix.lower() != ".png":
            from PIL import Image

            Image.init()
            kind = ("images are written as PNG (lossless)"
                    if out.suffix.lower() in Image.registered_extensions()
                    else f"unknown image type {out.suffix or '(no extension)'!r}")
            raise UsageError(f"--out {out}: {kind}; end the name with .png.")
        inputs = [Path(args.labels)] + ([Path(args.instances)] if args.instances else [])
        if any(out.resolve() == path.resolve() for path in inputs):
            raise UsageError(f"--out {out} is one of the input maps: give another file name.")
    elif out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: --labels is a folder, so give a folder for "
                         "the images.")
    elif out.resolve().is_relative_to(Path(args.labels).resolve()):
        raise UsageError(f"--out {out} is inside --labels {args.labels}: the images would be "
                         "read as label maps next time; give a folder outside it.")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {out}: {parent} is a file, not a folder.")
            break
    _check_replacements(args, Path(args.labels).is_file())


def _made_here(path: Path) -> bool:
    """Whether ``path`` is a contact sheet or an index page this tool wrote (its mark)."""
    try:
        if path.suffix.lower() == ".html":
            with open(path, encoding="utf-8", errors="replace") as page:
                return PAGE_MARK in page.read(4096)
        from PIL import Image

        with Image.open(path) as image:
            return image.info.get("Software") == TOOL
    except (OSError, ValueError):  # unreadable: not ours
        return False


def _check_replacements(args: argparse.Namespace, single: bool) -> None:
    """Refuse, before any work, to replace a file nobody asked to replace."""
    out = Path(args.out)
    folder = out.parent if single else out
    pictures = [("--grid", Path(args.grid))] if args.grid else []
    if args.html:
        pictures.append(("--html", folder / "index.html"))
    for option, path in pictures:
        if path.is_dir():
            raise UsageError(f"{option}: {path} is a folder; "
                             + ("name a .png file." if option == "--grid" else
                                "give another --out."))
    if single and args.grid and Path(args.grid).resolve() == out.resolve():
        raise UsageError(f"--grid {args.grid} is --out: give the contact sheet another name.")
    if args.overwrite:
        return
    if single and out.exists():
        raise UsageError(f"--out {out} exists: add --overwrite to replace it, or name another "
                         "file.")
    also = "" if single else f" (--overwrite also replaces the existing images in {out})"
    for option, path in pictures:
        if path.exists() and not _made_here(path):
            where = "name another file" if option == "--grid" else "give another --out"
            raise UsageError(f"{option}: {path} exists and spade-synthesize did not write it: "
                             f"move it away or {where}, or add --overwrite to replace "
                             f"it{also}.")


def _backend(args: argparse.Namespace, stack):
    from spade_tf.synthesis_backends import ModelFolderBackend, SavedModelBackend

    if args.model_dir is not None:
        return ModelFolderBackend(args.model_dir, checkpoint=args.checkpoint,
                                  precision=args.precision, weights=args.weights)
    if args.export is not None:
        return SavedModelBackend(args.export)
    if args.tflite is not None:
        from spade_cli.quiet import quiet_litert
        from spade_tf.synthesis_backends import TFLiteBackend

        with quiet_litert():
            return TFLiteBackend(args.tflite)
    from serving.client import ServingError, SpadeClient

    client = stack.enter_context(SpadeClient(args.server, args.model_name, timeout=args.timeout,
                                             total_timeout=args.timeout))
    try:
        return ServerBackend(client, args.version)
    except ServingError as error:
        raise _served_error(error, args) from None


def _progress() -> ProgressLine:
    """``synthesized 12/40 (3.1 images/s)`` on stderr: one updated line on a terminal, a line
    every PROGRESS_SECONDS otherwise."""
    return ProgressLine("synthesized", interval=PROGRESS_SECONDS, rate_unit="images")


def _pictures(args: argparse.Namespace, summary, classes, out: Path) -> list[str]:
    """The contact sheet and the index page, when asked: every map with an image in --out
    (written now or kept), each map at its own size; returns what was written."""
    import numpy as np
    from PIL import Image

    from spade_tf.map_files import SynthesisError, read_maps
    from spade_tf.png import write_png
    from spade_tf.visualize import MAX_SHEET_ROWS, contact_sheet, write_index_html

    def shown(read_image: bool):
        """(result, label map in colours, image or its (height, width)) per listed map;
        a map or a kept image that cannot be read (kept ones were never checked) is left
        out."""
        for result in listed:
            try:
                labels = classes.colorize(read_maps(result.item, args.allow_lossy)[0])
                with Image.open(result.output) as file:
                    picture = np.asarray(file.convert("RGB")) if read_image \
                        else (file.height, file.width)
            except (SynthesisError, OSError, ValueError):
                continue
            yield result, labels, picture

    listed = [result for result in summary.results if result.status in ("written", "kept")]
    notes = []
    if args.grid and listed:
        rows = []
        for _, labels, picture in shown(read_image=True):
            rows.append([labels, picture])
            if len(rows) == MAX_SHEET_ROWS:
                break
        if rows:
            write_png(Path(args.grid), contact_sheet(rows), text={"Software": TOOL})
            more = f", first {len(rows)} of {len(listed)}" if len(rows) < len(listed) else ""
            notes.append(f"contact sheet {args.grid} (label | image{more})")
    if args.html and listed:
        rows = []
        for result, labels, size in shown(read_image=False):
            label_png = out / "index_files" / f"{result.item.name}.label.png"
            write_png(label_png, labels)
            rows.append((result.item.name, [(label_png, labels.shape[:2]),
                                            (result.output, size)]))
        kept = summary.count("kept")
        note = f"{len(rows)} images" + (f" ({kept} kept from before)" if kept else "")
        page = write_index_html(out / "index.html", f"{TOOL}: {out.name}",
                                ["label map", "image"], rows,
                                note + "; label maps in the model's class colours.",
                                head=PAGE_MARK, row_height=PAGE_ROW_HEIGHT)
        notes.append(f"index page {page}")
    return notes


def _size_text(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return f"{image.width}x{image.height}"


def synthesize_command(args: argparse.Namespace) -> int:
    import contextlib

    from serving.client import ServingError
    from spade_tf.map_files import MapFile, list_map_files, read_maps, read_style_photo
    from spade_tf.synthesis import synthesize_files

    _check_arguments(args)
    style = read_style_photo(args.style) if args.style else None
    # The files' own mistakes show before any model loads or server is asked.
    items = list_map_files(args.labels, args.instances, args.instances is not None)
    read_maps(items[0], args.allow_lossy)
    single = Path(args.labels).is_file()
    out = Path(args.out).parent if single else Path(args.out)
    with contextlib.ExitStack() as stack:
        backend = _backend(args, stack)
        info = backend.info
        items = list_map_files(args.labels, args.instances, info.use_instance_edges)
        if single:  # absent, or --overwrite (checked above)
            items = [MapFile(Path(args.out).stem, items[0].label, items[0].instance)]
        try:
            summary = synthesize_files(
                backend, items, out, batch_size=args.batch_size, resize=args.resize,
                seed=args.seed, style=style, overwrite=args.overwrite or single,
                skip_bad=args.skip_bad and not single, allow_lossy=args.allow_lossy,
                progress=None if single else _progress().update)
            notes = _pictures(args, summary, info.classes, out)
        except ServingError as error:
            raise _served_error(error, args) from None
        except OSError as error:
            raise UsageError(f"cannot write {error.filename or out}: "
                             f"{error.strerror or error}.") from None
    if single:
        print(f"wrote {args.out} ({_size_text(Path(args.out))})")
        for note in notes:
            print(f"wrote {note}")
        return 0
    written, kept = summary.count("written"), summary.count("kept")
    skipped = [result for result in summary.results if result.status == "skipped"]
    print(f"wrote {written} image{'s' if written != 1 else ''} to {out}"
          + (f" in {summary.seconds:.1f} s" if written else ""))
    if kept:
        print(f"kept {kept} existing image{'s' if kept != 1 else ''} (--overwrite replaces "
              "them)")
    for note in notes:
        print(f"wrote {note}")
    for result in skipped:
        print(f"skipped {result.item.label}: {result.problem}", file=sys.stderr)
    if skipped:
        print(f"spade-synthesize: skipped {len(skipped)} unusable map"
              f"{'s' if len(skipped) != 1 else ''} (listed above)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), synthesize_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
