"""Dataset listing -> checked, sharded TFRecords with a manifest.

Two passes. The check pass decodes every pair in worker processes (files exist and
decode, sizes agree, label ids are in range) and counts classes; bad pairs stop the
conversion with a summary, or are skipped and listed with ``skip_bad``. The write pass
encodes the good pairs shard by shard; each shard is written under a temporary name and
renamed when complete, and the manifest is written last, so a folder with a manifest is
whole. ``.convert-state.json`` remembers what was converted: a rerun of the same conversion
keeps the finished shards and writes the rest, a different one starts over.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from spade_tf.errors import SpadeError
from tfrecords_tools.checks import CheckedPair, check_pair, encode_pair
from tfrecords_tools.datasets import DatasetListing, Pair

STATE_FILE = ".convert-state.json"
SHUFFLE_SEED = 0


class ConversionFailed(SpadeError, RuntimeError):
    """The conversion stopped; the message summarizes why (and lists bad pairs)."""


Reporter = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def _fingerprint(listing: DatasetListing, num_shards: int) -> str:
    """Changes when the files, their sizes or times, or the options change."""
    digest = hashlib.sha256()
    digest.update(json.dumps([listing.name, listing.split, dataclasses.asdict(listing.rule),
                              listing.has_instances, num_shards]).encode())
    for pair in listing.pairs:
        digest.update(pair.key.encode())
        for path in (pair.image, pair.label, pair.instance):
            if path is not None and path.exists():
                stat = path.stat()
                digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _pool(workers: int) -> concurrent.futures.Executor:
    if workers <= 1:
        return _InlineExecutor()
    # Spawned workers import only Pillow and numpy, never the parent's TensorFlow state.
    context = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)


class _InlineExecutor(concurrent.futures.Executor):
    """Runs in the calling process: for --workers 1 and for debugging."""

    def map(self, fn, *iterables, **kwargs):
        return map(fn, *iterables)


def _ordered_map(pool: concurrent.futures.Executor, fn, items: list, rule,
                 chunksize: int) -> Iterator:
    return pool.map(fn, items, [rule] * len(items), chunksize=chunksize)


def check_pairs(listing: DatasetListing, workers: int,
                report: Reporter = _stderr) -> list[CheckedPair]:
    progress = _Progress("checked pairs", len(listing.pairs), report)
    results = []
    with _pool(workers) as pool:
        for done, result in enumerate(_ordered_map(pool, check_pair, list(listing.pairs),
                                                   listing.rule, chunksize=8), start=1):
            results.append(result)
            progress.update(done)
    return results


def _summary(bad: list[CheckedPair], total: int) -> str:
    lines = [f"{len(bad)} of {total} pairs are unusable:"]
    lines += [f"  - {item.problem}" for item in bad[:20]]
    if len(bad) > 20:
        lines.append(f"  ... and {len(bad) - 20} more")
    lines.append("Fix them, or rerun with --skip-bad to leave them out (they are listed in "
                 "the manifest).")
    return "\n".join(lines)


def _prepare_output(out: Path, fingerprint: str, overwrite: bool) -> set[str]:
    """Make ``out`` ready; returns the names of finished shards that can be kept."""
    from spade_tf.data.schema import MANIFEST_FILE, SHARD_SUFFIX

    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    ours = [p for p in out.iterdir()
            if p.name.endswith(SHARD_SUFFIX) or p.name.endswith(".tmp")
            or p.name in (MANIFEST_FILE, STATE_FILE)]
    foreign = [p.name for p in out.iterdir() if p not in ours]
    if foreign and not overwrite:
        raise ConversionFailed(
            f"{out} holds other files ({', '.join(sorted(foreign)[:3])}): choose an empty or "
            "new folder for the TFRecords."
        )
    previous = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if previous.get("fingerprint") == fingerprint and not overwrite:
        return {p.name for p in ours if p.name.endswith(SHARD_SUFFIX)}
    for path in ours:  # a different conversion: start over
        path.unlink()
    return set()


def _write_shard(path: Path, records: Iterable[bytes]) -> tuple[int, int]:
    import tensorflow as tf

    staging = path.with_name(f".{path.name}.tmp")
    count = 0
    with tf.io.TFRecordWriter(str(staging)) as writer:
        for record in records:
            writer.write(record)
            count += 1
    os.replace(staging, path)
    return count, path.stat().st_size


def _shard_records(pool, pairs: list[Pair], rule) -> Iterator[bytes]:
    from spade_tf.data.schema import encode_example

    for encoded in _ordered_map(pool, encode_pair, pairs, rule, chunksize=4):
        yield encode_example(encoded.image_bytes, encoded.label_png, encoded.instance_png,
                             encoded.height, encoded.width, encoded.key)


def convert_listing(listing: DatasetListing, out_dir: str | os.PathLike, num_shards: int = 0,
                    workers: int = 0, skip_bad: bool = False, overwrite: bool = False,
                    report: Reporter = _stderr):
    """Convert ``listing`` into ``out_dir``; returns the manifest.

    ``num_shards`` 0 picks about 100 examples per shard (at least 1);
    ``workers`` 0 uses every CPU core.
    """
    from spade_tf.data.manifest import Manifest, ShardInfo, write_manifest
    from spade_tf.data.schema import shard_name

    out = Path(out_dir)
    workers = workers or os.cpu_count() or 1
    report(f"{listing.name} {listing.split}: {len(listing.pairs)} pairs, checking with "
           f"{workers} workers")
    checked = check_pairs(listing, workers, report)
    bad = [item for item in checked if item.problem is not None]
    if bad and not skip_bad:
        raise ConversionFailed(_summary(bad, len(checked)))
    bad_keys = {item.key for item in bad}
    good = [pair for pair in listing.pairs if pair.key not in bad_keys]
    if not good:
        raise ConversionFailed(f"none of the {len(checked)} pairs is usable:\n"
                               + _summary(bad, len(checked)))
    # A fixed shuffle spreads cities / scenes over the shards.
    random.Random(SHUFFLE_SEED).shuffle(good)
    num_shards = num_shards or max(1, round(len(good) / 100))
    num_shards = min(num_shards, len(good))

    fingerprint = _fingerprint(listing, num_shards)
    finished = _prepare_output(out, fingerprint, overwrite)
    (out / STATE_FILE).write_text(json.dumps({"fingerprint": fingerprint}))
    shards = []
    progress = _Progress("written shards", num_shards, report)
    with _pool(workers) as pool:
        for index in range(num_shards):
            name = shard_name(listing.split, index, num_shards)
            members = good[index::num_shards]
            path = out / name
            if name in finished:
                shards.append(ShardInfo(name, len(members), path.stat().st_size))
            else:
                count, size = _write_shard(path, _shard_records(pool, members, listing.rule))
                shards.append(ShardInfo(name, count, size))
            progress.update(index + 1)

    histogram = np.sum([item.class_counts for item in checked if item.problem is None], axis=0)
    manifest = Manifest(
        dataset=listing.name, split=listing.split, num_examples=len(good),
        num_classes=listing.rule.num_classes, dontcare_label=listing.rule.dontcare_label,
        has_instances=listing.has_instances, shards=tuple(shards),
        skipped=tuple({"key": item.key, "problem": item.problem} for item in bad),
        class_histogram=tuple(int(v) for v in histogram),
    )
    write_manifest(out, manifest)
    report(f"wrote {len(good)} examples in {num_shards} shards to {out}"
           + (f"; skipped {len(bad)} bad pairs (listed in the manifest)" if bad else ""))
    return manifest
