"""Files and folders that a reader never sees half-written: the one way the package writes.

Every writer (images, grids, pages, TFRecord shards, manifests, exports, model folders,
checkpoint copies, summaries) goes through here, with one rule: write under a hidden
sibling name (same folder, so the rename stays on one file system and is atomic), flush
and ``fsync`` it, rename it onto the final name, ``fsync`` the folder. On any failure,
Ctrl-C included, the sibling is removed and the final name is untouched: the old file (or
no file) stays, never a truncated one. TensorFlow-free.

- :func:`atomic_path`: a path to write to by any means (PIL, TFRecordWriter, a callback);
- :func:`write_bytes` / :func:`write_text`: the common cases;
- :func:`atomic_directory`: a folder filled in staging and renamed into place (replacing
  an existing one only when asked, with both renames done or neither);
- :func:`is_staging_name`: recognises the leftovers of an interrupted writer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

# Hidden siblings: ``.<name>.<pid>.tmp`` for files, ``.<name>.tmp-XXXX`` for folders
# (mkdtemp's suffix), ``.<name>.old-XXXX`` for a folder being replaced.
STAGING_SUFFIX = ".tmp"
_FOLDER_MARKS = (".tmp-", ".old-")


def staging_file(path: Path) -> Path:
    """The hidden sibling :func:`atomic_path` writes ``path`` under."""
    return path.with_name(f".{path.name}.{os.getpid()}{STAGING_SUFFIX}")


def is_staging_name(name: str) -> bool:
    """Whether ``name`` is a leftover of an interrupted atomic write (file or folder)."""
    return name.startswith(".") and (name.endswith(STAGING_SUFFIX)
                                     or any(mark in name for mark in _FOLDER_MARKS))


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk; file systems that cannot
    sync folders (some network ones) are left to their own guarantees."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C waits until the block is done (both renames of a swap, or neither); a
    no-op off the main thread, where Python delivers no signals anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(*received[0])  # Python's default handler raises KeyboardInterrupt here
        elif received and previous == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the hidden sibling to write ``path``'s new content to; on leaving the block
    without an error it becomes ``path`` (parents are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_file(path)
    try:
        yield staging
        if not staging.exists():
            raise FileNotFoundError(f"nothing was written to {staging}")
        _fsync(staging)
        os.replace(staging, path)
        _fsync(path.parent)
    finally:
        staging.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace ``path``'s content with ``data`` atomically; returns ``path``."""
    with atomic_path(path) as staging:
        staging.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path``'s content with ``text`` atomically; returns ``path``."""
    return write_bytes(path, text.encode(encoding))


class TargetExists(FileExistsError):
    """:func:`atomic_directory` found its target taken (and was not asked to replace it)."""


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, replace: bool = False,
                     staging_prefix: str | None = None) -> Iterator[Path]:
    """Yield an empty hidden sibling folder that becomes ``target`` when the block ends
    without an error; on an error it is removed and ``target`` is untouched.

    An existing ``target`` raises :class:`TargetExists` at the rename unless ``replace``:
    then it is swapped out (both renames or neither, even under Ctrl-C) and removed.
    ``staging_prefix`` names the staging folder (default ``.<target>.tmp-``; TF Serving's
    exports need a name that is not an integer, which any hidden name is).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix or f".{target.name}.tmp-",
                                    dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide it from a server run as another user
        yield staging
        _fsync_tree(staging)
        if target.exists() and not replace:
            raise TargetExists(f"{target} exists")
        with _interrupts_deferred():
            if target.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-",
                                                dir=target.parent))
                os.replace(target, retired / target.name)
                try:
                    os.replace(staging, target)
                except OSError:
                    os.replace(retired / target.name, target)
                    raise
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staging, target)
        _fsync(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
