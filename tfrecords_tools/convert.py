"""Dataset listing -> checked, sharded TFRecords with a manifest.

Cheap checks come first: the output folder is judged from the listing and the options
alone (its fingerprint), before a single pair is decoded. Then two passes. The check pass
decodes every pair in worker processes (files exist and decode, sizes agree, label ids
are in range) and counts classes; bad pairs stop the conversion with a summary, or are
skipped and listed with ``skip_bad``. The write pass encodes the good pairs shard by
shard; each shard is written under a temporary name and renamed when complete, and the
manifest is written last, so a folder with a manifest is whole.

The output folder (judged, resumed, replaced whole with ``overwrite``) is
:mod:`tfrecords_tools.out_folder`'s; the worker processes are
:mod:`tfrecords_tools.workers`'; the per-pair work is :mod:`tfrecords_tools.checks`'.

Ctrl-C stops cleanly: worker processes ignore it (the parent decides), queued work is
dropped, the shard being written is removed, and :class:`ConversionInterrupted` says how
far it got.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from spade_tf.atomic import atomic_path
from spade_tf.progress import ProgressLine
from tfrecords_tools.checks import BadPair, CheckedPair, check_pair, encode_pair
from tfrecords_tools.datasets import DatasetListing, Pair
from tfrecords_tools.messages import (
    ConversionFailed,
    ConversionInterrupted,
    Reporter,
    plural,
    stderr_reporter,
)
from tfrecords_tools.out_folder import (
    STATE_FILE,
    clear_folder,
    plan_output,
    remove_staging,
    staging_folder,
    swap,
    write_state,
)
from tfrecords_tools.workers import ordered_map, pool

__all__ = ["STATE_FILE", "ConversionFailed", "ConversionInterrupted", "check_pairs",
           "convert_listing"]

SHUFFLE_SEED = 0
MAX_LISTED = 20
PROGRESS_INTERVAL = 0.5  # seconds between progress lines


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


# --- the check pass ----------------------------------------------------------------------


def check_pairs(listing: DatasetListing, workers: int,
                report: Reporter = stderr_reporter) -> list[CheckedPair]:
    progress = ProgressLine("checked pairs:", len(listing.pairs), interval=PROGRESS_INTERVAL,
                            write=report)
    results: list[CheckedPair] = []
    try:
        with pool(workers) as executor:
            for done, result in enumerate(ordered_map(executor, check_pair, list(listing.pairs),
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


# --- the write pass ----------------------------------------------------------------------


def _write_shard(path: Path, records: Iterable[bytes]) -> tuple[int, int]:
    """Write ``records`` under a temporary name, renamed to ``path`` when complete."""
    import tensorflow as tf

    from spade_tf.errors import readable_tf_message

    count = 0
    try:
        with atomic_path(path) as staging, tf.io.TFRecordWriter(str(staging)) as writer:
            for record in records:
                writer.write(record)
                count += 1
    except tf.errors.OpError as error:
        raise ConversionFailed(f"cannot write {path}: {readable_tf_message(error.message)}") \
            from None
    return count, path.stat().st_size


def _shard_records(executor, pairs: list[Pair], rule) -> Iterator[bytes]:
    from spade_tf.data.schema import encode_example

    for encoded in ordered_map(executor, encode_pair, pairs, rule, chunksize=4):
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
                    report: Reporter = stderr_reporter):
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
    plan = plan_output(out, fingerprint, overwrite, listing.sources)
    if plan.done is not None:
        remove_staging(staging_folder(out))  # an abandoned overwrite
        report(f"{out} already holds this conversion ({plural(plan.done.num_examples, 'example')}"
               f" in {plural(len(plan.done.shards), 'shard')}); nothing to do (add --overwrite "
               "to convert again)")
        return plan.done
    if plan.note:
        report(plan.note)

    workers = min(workers or os.cpu_count() or 1, len(listing.pairs))
    report(f"{listing.name} {listing.split}: {plural(len(listing.pairs), 'pair')}, checking "
           f"with {plural(workers, 'worker')}")
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
        clear_folder(work, keep | {STATE_FILE})
        write_state(work, {
            "fingerprint": fingerprint, "dataset": listing.name, "split": listing.split,
            "pairs": len(listing.pairs), "num_shards": num_shards})
    except OSError as error:
        raise ConversionFailed(f"cannot write to {work}: {error.strerror or error}.") from None

    shards = []
    progress = ProgressLine("written shards:", num_shards, interval=PROGRESS_INTERVAL,
                            write=report)
    try:
        with pool(workers) as executor:
            for index, name in enumerate(names):
                members = good[index::num_shards]
                path = work / name
                if name in keep:
                    shards.append(ShardInfo(name, len(members), path.stat().st_size))
                else:
                    count, size = _write_shard(path, _shard_records(executor, members,
                                                                    listing.rule))
                    shards.append(ShardInfo(name, count, size))
                progress.update(index + 1)
    except KeyboardInterrupt:
        kept = f"; {out} still holds the earlier conversion" if plan.staged else ""
        # Counted on disk: a Ctrl-C between a shard's rename into place and its count
        # would otherwise report one shard fewer than the resume then keeps.
        finished = sum((work / name).is_file() for name in names)
        raise ConversionInterrupted(
            f"interrupted after {finished} of {plural(num_shards, 'shard')}; run the same "
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
            swap(work, out)
        else:
            remove_staging(staging_folder(out))  # an abandoned overwrite
    except OSError as error:
        raise ConversionFailed(f"cannot write to {out}: {error.strerror or error}.") from None
    report(f"wrote {plural(len(good), 'example')} in {plural(num_shards, 'shard')} to {out}"
           + (f"; skipped {plural(len(bad), 'bad pair')} (listed in the manifest)"
              if bad else ""))
    return manifest
