"""Dataset listing -> checked, sharded TFRecords with a manifest.

Cheap checks come first: the output folder is judged from the listing and the options
alone (its fingerprint), before a single pair is decoded. Then two passes. The check pass
decodes every pair in worker processes (files exist and decode, sizes agree, label ids
are in range) and counts classes; bad pairs stop the conversion with a summary, or are
skipped and listed with ``skip_bad``. The write pass encodes the good pairs shard by
shard; each shard is written under a temporary name and renamed when complete, and the
manifest is written last, so a folder with a manifest is whole.

``.convert-state.json`` remembers what is being converted into a folder:

- the same conversion again keeps the finished shards and writes the rest (an interrupted
  run resumes; a finished one has nothing to do);
- a different conversion, or files that are not a conversion, are refused; with
  ``overwrite`` a different conversion is replaced, but only once the new one is complete:
  it is written into a hidden sibling folder (``.<name>.converting``) that takes the old
  folder's place at the end, so an interrupted overwrite leaves the old conversion intact
  (and the same command resumes it).

Ctrl-C stops cleanly: worker processes ignore it (the parent decides), queued work is
dropped, the shard being written is removed, and :class:`ConversionInterrupted` says how
far it got.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from spade_tf.errors import SpadeError
from tfrecords_tools.checks import BadPair, CheckedPair, check_pair, encode_pair
from tfrecords_tools.datasets import DatasetListing, Pair

STATE_FILE = ".convert-state.json"
SHUFFLE_SEED = 0
STAGING_SUFFIX = ".converting"  # .<out name>.converting beside --out, for --overwrite
RETIRED_SUFFIX = ".replaced"  # the old conversion, for the moment of the swap
MANIFEST_NAME = "manifest.json"  # spade_tf.data.schema.MANIFEST_FILE, without TensorFlow
SHARD_SUFFIX = ".tfrecord"  # spade_tf.data.schema.SHARD_SUFFIX
MAX_LISTED = 20


class ConversionFailed(SpadeError, RuntimeError):
    """The conversion stopped; the message summarizes why (and lists bad pairs).

    ``details`` (the bad pairs, one per line) and ``short`` (one line) let a command-line
    tool print the list first and end with a single error line.
    """

    def __init__(self, message: str, details: Sequence[str] = (), short: str | None = None):
        super().__init__(message)
        self.details = tuple(details)
        self.short = short or message


class ConversionInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the conversion; the message says what was kept and how to go on."""


Reporter = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class _Progress:
    """'<what>: done/total' at most every half second, and at the end."""

    def __init__(self, what: str, total: int, report: Reporter):
        self.what, self.total, self.report = what, total, report
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if done == self.total or now - self.last >= 0.5:
            self.last = now
            self.report(f"{self.what}: {done}/{self.total}")


def _fingerprint(listing: DatasetListing, num_shards: int, skip_bad: bool) -> str:
    """Changes when the files, their sizes or times, or the options change.

    Computed from the listing and the requested options only, so it is known before
    anything is decoded.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([listing.name, listing.split, dataclasses.asdict(listing.rule),
                              listing.has_instances, num_shards, skip_bad]).encode())
    for pair in listing.pairs:
        digest.update(pair.key.encode())
        for path in (pair.image, pair.label, pair.instance):
            if path is not None and path.exists():
                stat = path.stat()
                # Resolved: the same files named from another folder are the same data.
                digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


# --- worker processes and Ctrl-C ---------------------------------------------------------


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is the parent's to handle, so no traceback per worker.

    Workers start with SIGINT blocked (see :func:`_sigint_blocked`), so one that arrives
    while a worker is still importing waits here and is then discarded.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    # Child processes inherit the signal mask; the parent still gets Ctrl-C (Python runs
    # its handler in the main thread whichever thread the signal reached).
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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


class _InlineExecutor(concurrent.futures.Executor):
    """Runs in the calling process: for --workers 1 and for debugging."""

    def map(self, fn, *iterables, **kwargs):
        return map(fn, *iterables)


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[concurrent.futures.Executor]:
    if workers <= 1:
        yield _InlineExecutor()
        return
    # Spawned workers import only Pillow and numpy, never the parent's TensorFlow state.
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                  initializer=_ignore_sigint)
    try:
        yield pool
    except BaseException:
        # Drop the queued work; the workers finish the item in hand and exit.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _ordered_map(pool: concurrent.futures.Executor, fn, items: list, rule,
                 chunksize: int) -> Iterator:
    # Submitting starts the worker processes: they must not inherit a live Ctrl-C.
    with _sigint_blocked():
        return pool.map(fn, items, [rule] * len(items), chunksize=chunksize)


# --- the check pass ----------------------------------------------------------------------


def check_pairs(listing: DatasetListing, workers: int,
                report: Reporter = _stderr) -> list[CheckedPair]:
    progress = _Progress("checked pairs", len(listing.pairs), report)
    results: list[CheckedPair] = []
    try:
        with _pool(workers) as pool:
            for done, result in enumerate(_ordered_map(pool, check_pair, list(listing.pairs),
                                                       listing.rule, chunksize=8), start=1):
                results.append(result)
                progress.update(done)
    except KeyboardInterrupt:
        raise ConversionInterrupted(
            f"interrupted while checking pairs ({len(results)} of {len(listing.pairs)} "
            "checked; no shard was written or removed); run the same command to start "
            "again") from None
    return results


def _summary(bad: list[CheckedPair], total: int) -> ConversionFailed:
    details = [f"  - {item.problem}" for item in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        details.append(f"  ... and {len(bad) - MAX_LISTED} more")
    headline = f"{len(bad)} of {total} pairs are unusable"
    advice = "Fix them, or rerun with --skip-bad to leave them out (they are listed in the " \
             "manifest)."
    if len(bad) == total:
        advice = "Fix them: none is usable, so --skip-bad would leave nothing to convert."
    message = "\n".join([f"{headline}:", *details, advice])
    short = f"{headline} (listed above). {advice}"
    return ConversionFailed(message, details, short)


# --- the output folder -------------------------------------------------------------------


def _is_ours(path: Path) -> bool:
    """A file a conversion writes into its folder (anything else is the user's)."""
    name = path.name
    return (name.endswith(SHARD_SUFFIX) or name in (MANIFEST_NAME, STATE_FILE)
            or (name.startswith(".") and name.endswith(".tmp")))


def _names(paths: Iterable[Path]) -> str:
    names = sorted(p.name for p in paths)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _read_state(folder: Path) -> dict | None:
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _describe(folder: Path, state: dict | None) -> str:
    """What a conversion folder holds, in the user's terms."""
    from spade_tf.data.manifest import DataError, read_manifest

    if (folder / MANIFEST_NAME).is_file():
        try:
            manifest = read_manifest(folder)
        except DataError:
            return f"a conversion whose {MANIFEST_NAME} cannot be read"
        return (f"a finished conversion of {manifest.dataset} {manifest.split} "
                f"({_plural(manifest.num_examples, 'example')} in "
                f"{_plural(len(manifest.shards), 'shard')})")
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
class _Plan:
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
                              f"{_plural(len(shards), 'finished shard')} kept")
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


def _plan_output(out: Path, fingerprint: str, overwrite: bool,
                 sources: Iterable[Path]) -> _Plan:
    """Judge ``--out`` before any work; raises ConversionFailed, changes nothing."""
    if out.exists() and not out.is_dir():
        raise ConversionFailed(f"--out {out} is a file; give a new or empty folder for the "
                               "TFRecords.")
    _check_outside_sources(out, sources)
    entries = list(out.iterdir()) if out.is_dir() else []
    if not entries:
        return _Plan(out, out, set())
    state = _read_state(out)
    foreign = [p for p in entries if not _is_ours(p)]
    if state is None and not (out / MANIFEST_NAME).is_file():
        raise ConversionFailed(
            f"--out {out} is not empty and holds no conversion ({_names(entries)}): give a "
            "new or empty folder for the TFRecords.")
    if not overwrite:
        keep, done, note = _resumable(out, fingerprint)
        if state is not None and state.get("fingerprint") == fingerprint:
            return _Plan(out, out, keep, done, note)
        raise ConversionFailed(
            f"--out {out} already holds {_describe(out, state)}, made from other data or "
            "options: pick another --out, or add --overwrite to replace it (it is kept "
            "until the new conversion is complete).")
    if foreign:
        raise ConversionFailed(
            f"--out {out} holds {_describe(out, state)} and other files ({_names(foreign)}) "
            "that --overwrite would delete: move them, or pick another --out.")
    staging = out.parent / f".{out.name}{STAGING_SUFFIX}"
    keep: set[str] = set()
    if staging.is_dir():
        keep, _, _ = _resumable(staging, fingerprint)
    note = f"replacing {_describe(out, state)} in {out} once the new one is complete"
    if keep:
        note += f" (resuming: {_plural(len(keep), 'finished shard')} kept)"
    return _Plan(out, staging, keep, None, note)


def _clear_folder(folder: Path, keep: set[str]) -> None:
    """Remove what a conversion wrote into ``folder`` except the shards in ``keep``."""
    for path in folder.iterdir():
        if _is_ours(path) and path.name not in keep:
            path.unlink()


def _remove_staging(folder: Path) -> None:
    """Remove a staging folder (ours only: it holds nothing but conversion files)."""
    if folder.is_dir() and all(_is_ours(p) and p.is_file() for p in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


def _swap(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` folder in place of ``target``."""
    retired = target.parent / f".{target.name}{RETIRED_SUFFIX}"
    _remove_staging(retired)
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


# --- the write pass ----------------------------------------------------------------------


def _write_shard(path: Path, records: Iterable[bytes]) -> tuple[int, int]:
    """Write ``records`` under a temporary name, renamed to ``path`` when complete."""
    import tensorflow as tf

    from spade_tf.errors import readable_tf_message

    staging = path.with_name(f".{path.name}.tmp")
    count = 0
    try:
        with tf.io.TFRecordWriter(str(staging)) as writer:
            for record in records:
                writer.write(record)
                count += 1
        os.replace(staging, path)
    except tf.errors.OpError as error:
        raise ConversionFailed(f"cannot write {path}: {readable_tf_message(error.message)}") \
            from None
    finally:
        staging.unlink(missing_ok=True)
    return count, path.stat().st_size


def _shard_records(pool, pairs: list[Pair], rule) -> Iterator[bytes]:
    from spade_tf.data.schema import encode_example

    for encoded in _ordered_map(pool, encode_pair, pairs, rule, chunksize=4):
        yield encode_example(encoded.image_bytes, encoded.label_png, encoded.instance_png,
                             encoded.height, encoded.width, encoded.key)


def _check_counts(num_shards: int, workers: int) -> None:
    if num_shards < 0:
        raise ConversionFailed(f"num_shards {num_shards}: expected a positive number of "
                               "shards (0 picks about 100 examples per shard).")
    if workers < 0:
        raise ConversionFailed(f"workers {workers}: expected a positive number of worker "
                               "processes (0 uses every CPU core).")


def convert_listing(listing: DatasetListing, out_dir: str | os.PathLike, num_shards: int = 0,
                    workers: int = 0, skip_bad: bool = False, overwrite: bool = False,
                    report: Reporter = _stderr):
    """Convert ``listing`` into ``out_dir``; returns the manifest.

    ``num_shards`` 0 picks about 100 examples per shard (at least 1);
    ``workers`` 0 uses every CPU core. ``out_dir`` must be new, empty, or hold the same
    conversion (which is resumed, or returned as it is when complete); with ``overwrite``
    a different conversion there is replaced once the new one is complete. Raises
    :class:`ConversionFailed`, or :class:`ConversionInterrupted` on Ctrl-C.
    """
    from spade_tf.data.manifest import Manifest, ShardInfo, write_manifest
    from spade_tf.data.schema import shard_name

    _check_counts(num_shards, workers)
    out = Path(out_dir)
    requested_shards = num_shards
    fingerprint = _fingerprint(listing, requested_shards, skip_bad)
    plan = _plan_output(out, fingerprint, overwrite, listing.sources)
    if plan.done is not None:
        _remove_staging(out.parent / f".{out.name}{STAGING_SUFFIX}")  # an abandoned overwrite
        report(f"{out} already holds this conversion ({_plural(plan.done.num_examples, 'example')}"
               f" in {_plural(len(plan.done.shards), 'shard')}); nothing to do (add --overwrite "
               "to convert again)")
        return plan.done
    if plan.note:
        report(plan.note)

    workers = min(workers or os.cpu_count() or 1, len(listing.pairs))
    report(f"{listing.name} {listing.split}: {_plural(len(listing.pairs), 'pair')}, checking "
           f"with {_plural(workers, 'worker')}")
    checked = check_pairs(listing, workers, report)
    bad = [item for item in checked if item.problem is not None]
    if bad and (not skip_bad or len(bad) == len(checked)):
        raise _summary(bad, len(checked))
    bad_keys = {item.key for item in bad}
    good = [pair for pair in listing.pairs if pair.key not in bad_keys]
    # A fixed shuffle spreads cities / scenes over the shards.
    random.Random(SHUFFLE_SEED).shuffle(good)
    num_shards = num_shards or max(1, round(len(good) / 100))
    num_shards = min(num_shards, len(good))
    names = [shard_name(listing.split, index, num_shards) for index in range(num_shards)]
    keep = plan.keep & set(names)

    work = plan.work
    try:
        work.mkdir(parents=True, exist_ok=True)
        # The state file is replaced, never removed: without it a folder of shards would
        # no longer be recognized as this conversion.
        _clear_folder(work, keep | {STATE_FILE})
        state = work / f".{STATE_FILE}.tmp"
        state.write_text(json.dumps({
            "fingerprint": fingerprint, "dataset": listing.name, "split": listing.split,
            "pairs": len(listing.pairs), "num_shards": num_shards}))
        os.replace(state, work / STATE_FILE)
    except OSError as error:
        raise ConversionFailed(f"cannot write to {work}: {error.strerror or error}.") from None

    shards = []
    progress = _Progress("written shards", num_shards, report)
    try:
        with _pool(workers) as pool:
            for index, name in enumerate(names):
                members = good[index::num_shards]
                path = work / name
                if name in keep:
                    shards.append(ShardInfo(name, len(members), path.stat().st_size))
                else:
                    count, size = _write_shard(path, _shard_records(pool, members,
                                                                    listing.rule))
                    shards.append(ShardInfo(name, count, size))
                progress.update(index + 1)
    except KeyboardInterrupt:
        kept = f"; {out} still holds the earlier conversion" if plan.staged else ""
        raise ConversionInterrupted(
            f"interrupted after {len(shards)} of {_plural(num_shards, 'shard')}; run the same "
            f"command to resume (finished shards are kept){kept}") from None
    except BadPair as error:  # decoded fine in the check pass, changed since
        raise ConversionFailed(f"{error} (the file changed during the conversion; run the "
                               "same command again)") from None
    except OSError as error:
        raise ConversionFailed(f"cannot write to {work}: {error.strerror or error}.") from None

    histogram = np.sum([item.class_counts for item in checked if item.problem is None], axis=0)
    manifest = Manifest(
        dataset=listing.name, split=listing.split, num_examples=len(good),
        num_classes=listing.rule.num_classes, dontcare_label=listing.rule.dontcare_label,
        has_instances=listing.has_instances, shards=tuple(shards),
        skipped=tuple({"key": item.key, "problem": item.problem} for item in bad),
        class_histogram=tuple(int(v) for v in histogram),
    )
    try:
        write_manifest(work, manifest)
        if plan.staged:
            _swap(work, out)
        else:
            _remove_staging(out.parent / f".{out.name}{STAGING_SUFFIX}")  # abandoned overwrite
    except OSError as error:
        raise ConversionFailed(f"cannot write to {out}: {error.strerror or error}.") from None
    report(f"wrote {_plural(len(good), 'example')} in {_plural(num_shards, 'shard')} to {out}"
           + (f"; skipped {_plural(len(bad), 'bad pair')} (listed in the manifest)"
              if bad else ""))
    return manifest
