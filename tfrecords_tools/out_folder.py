"""The conversion's output folder: judged before any work, resumed, replaced whole.

``.convert-state.json`` remembers what is being converted into a folder:

- the same conversion again keeps the finished shards and writes the rest (an interrupted
  run resumes; a finished one has nothing to do);
- a different conversion, or files that are not a conversion, are refused; with
  ``overwrite`` a different conversion is replaced, but only once the new one is complete:
  it is written into a hidden sibling folder (``.<name>.converting``) that takes the old
  folder's place at the end, so an interrupted overwrite leaves the old conversion intact
  (and the same command resumes it).

Files are written with :mod:`spade_tf.atomic`. The folder swap is done here rather than by
:func:`spade_tf.atomic.atomic_directory`: that one removes its staging folder on any error
(Ctrl-C included) and names it at random, while an interrupted overwrite must keep its
staging folder, under a name the next run finds, to resume it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from spade_tf.atomic import is_staging_name, write_text
from tfrecords_tools.messages import ConversionFailed, plural

STATE_FILE = ".convert-state.json"
STAGING_SUFFIX = ".converting"  # .<out name>.converting beside --out, for --overwrite
RETIRED_SUFFIX = ".replaced"  # the old conversion, for the moment of the swap
MANIFEST_NAME = "manifest.json"  # spade_tf.data.schema.MANIFEST_FILE, without TensorFlow
SHARD_SUFFIX = ".tfrecord"  # spade_tf.data.schema.SHARD_SUFFIX


def staging_folder(out: Path) -> Path:
    """Where an ``overwrite`` of ``out`` is written until it is complete."""
    return out.parent / f".{out.name}{STAGING_SUFFIX}"


def _is_ours(path: Path) -> bool:
    """A file a conversion writes into its folder (anything else is the user's)."""
    name = path.name
    return (name.endswith(SHARD_SUFFIX) or name in (MANIFEST_NAME, STATE_FILE)
            or (is_staging_name(name) and not path.is_dir()))


def _names(paths: Iterable[Path]) -> str:
    names = sorted(p.name for p in paths)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _read_state(folder: Path) -> dict | None:
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def write_state(folder: Path, state: dict) -> None:
    """Replace ``folder``'s state file (never remove it: without it a folder of shards
    would no longer be recognized as this conversion)."""
    write_text(folder / STATE_FILE, json.dumps(state))


def _describe(folder: Path, state: dict | None) -> str:
    """What a conversion folder holds, in the user's terms."""
    from spade_tf.data.manifest import DataError, read_manifest

    if (folder / MANIFEST_NAME).is_file():
        try:
            manifest = read_manifest(folder)
        except DataError:
            return f"a conversion whose {MANIFEST_NAME} cannot be read"
        return (f"a finished conversion of {manifest.dataset} {manifest.split} "
                f"({plural(manifest.num_examples, 'example')} in "
                f"{plural(len(manifest.shards), 'shard')})")
    written = len(list(folder.glob(f"*{SHARD_SUFFIX}")))
    state = state or {}
    what = f" of {state['dataset']} {state['split']}" if "dataset" in state else ""
    total = f" of {state['num_shards']}" if "num_shards" in state else ""
    return f"an unfinished conversion{what} ({written}{total} shards written)"


def _check_outside_sources(out: Path, sources: Iterable[Path]) -> None:
    target = out.resolve()
    for source in sources:
        folder = source.resolve()
        if folder == target or folder.is_relative_to(target):
            raise ConversionFailed(
                f"--out {out} is or holds the dataset folder {source}: the TFRecords go to a "
                "new folder outside the dataset (e.g. tfrecords/<name>).")
        if target.is_relative_to(folder):
            raise ConversionFailed(
                f"--out {out} is inside the dataset folder {source}, which is read for "
                "images and maps: put the TFRecords outside it (e.g. tfrecords/<name>).")


@dataclasses.dataclass
class Plan:
    """Where to write, and what is already there."""

    target: Path  # where the finished conversion ends up (--out)
    work: Path  # where the shards are written: target, or its staging sibling
    keep: set[str]  # finished shards that can be kept (if the shard plan agrees)
    done: object | None = None  # the Manifest when this conversion is already complete
    note: str = ""  # said before the work starts (resuming, replacing)

    @property
    def staged(self) -> bool:
        return self.work != self.target


def _resumable(folder: Path, fingerprint: str) -> tuple[set[str], object | None, str]:
    """Finished shards of the same conversion in ``folder``; the manifest if all are fine."""
    from spade_tf.data.manifest import DataError, check_shard_files, read_manifest

    shards = {p.name for p in folder.glob(f"*{SHARD_SUFFIX}") if p.is_file()}
    if (_read_state(folder) or {}).get("fingerprint") != fingerprint:
        return set(), None, ""
    if not (folder / MANIFEST_NAME).is_file():
        return shards, None, (f"resuming the conversion in {folder}: "
                              f"{plural(len(shards), 'finished shard')} kept")
    try:
        manifest = read_manifest(folder)
        check_shard_files(folder, manifest)
        return shards, manifest, ""
    except DataError as error:  # a shard went missing or was changed: write those again
        good = set()
        with contextlib.suppress(DataError, OSError):
            manifest = read_manifest(folder)
            good = {s.name for s in manifest.shards
                    if (folder / s.name).is_file()
                    and (folder / s.name).stat().st_size == s.num_bytes}
        return good, None, f"repairing {folder}: {error}"


def plan_output(out: Path, fingerprint: str, overwrite: bool,
                sources: Iterable[Path]) -> Plan:
    """Judge ``--out`` before any work; raises ConversionFailed, changes nothing."""
    if out.exists() and not out.is_dir():
        raise ConversionFailed(f"--out {out} is a file; give a new or empty folder for the "
                               "TFRecords.")
    _check_outside_sources(out, sources)
    entries = list(out.iterdir()) if out.is_dir() else []
    if not entries:
        return Plan(out, out, set())
    state = _read_state(out)
    foreign = [p for p in entries if not _is_ours(p)]
    if state is None and not (out / MANIFEST_NAME).is_file():
        raise ConversionFailed(
            f"--out {out} is not empty and holds no conversion ({_names(entries)}): give a "
            "new or empty folder for the TFRecords.")
    if not overwrite:
        keep, done, note = _resumable(out, fingerprint)
        if state is not None and state.get("fingerprint") == fingerprint:
            return Plan(out, out, keep, done, note)
        raise ConversionFailed(
            f"--out {out} already holds {_describe(out, state)}, made from other data or "
            "options: pick another --out, or add --overwrite to replace it (it is kept "
            "until the new conversion is complete).")
    if foreign:
        raise ConversionFailed(
            f"--out {out} holds {_describe(out, state)} and other files ({_names(foreign)}) "
            "that --overwrite would delete: move them, or pick another --out.")
    staging = staging_folder(out)
    keep: set[str] = set()
    if staging.is_dir():
        keep, _, _ = _resumable(staging, fingerprint)
    note = f"replacing {_describe(out, state)} in {out} once the new one is complete"
    if keep:
        note += f" (resuming: {plural(len(keep), 'finished shard')} kept)"
    return Plan(out, staging, keep, None, note)


def clear_folder(folder: Path, keep: set[str]) -> None:
    """Remove what a conversion wrote into ``folder`` except the files in ``keep``."""
    for path in folder.iterdir():
        if _is_ours(path) and path.name not in keep:
            path.unlink()


def remove_staging(folder: Path) -> None:
    """Remove a staging folder (ours only: it holds nothing but conversion files)."""
    if folder.is_dir() and all(_is_ours(p) and p.is_file() for p in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """No KeyboardInterrupt for a moment that must not be cut in two (a folder swap)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def swap(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` folder in place of ``target``."""
    retired = target.parent / f".{target.name}{RETIRED_SUFFIX}"
    remove_staging(retired)
    with _sigint_ignored():  # both renames or neither
        moved = target.exists()
        if moved:
            os.replace(target, retired)
        try:
            os.replace(staging, target)
        except OSError:
            if moved:
                os.replace(retired, target)
            raise
    shutil.rmtree(retired, ignore_errors=True)
