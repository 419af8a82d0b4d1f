"""Atomic file writes, and advisory locks between processes.

A reader never sees a half-written file: data is written beside its final path under a
unique temporary name, flushed, and renamed into place with :func:`os.replace`, which is
atomic on POSIX file systems. :func:`file_lock` keeps two processes from working on the same
thing at once (two fetches of one dataset, two runs of one evaluation).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from iad_pipeline.errors import LockBusyError

LOCK_POLL = 0.1
"""Seconds between two tries of a lock that is held."""


def temp_sibling(path: Path, suffix: str = ".tmp") -> Path:
    """A unique temporary name in ``path``'s folder (same file system, so renames are atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{suffix}")


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed to ``path``, on error removed.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "x.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "x.txt").read_text()
    'hello'
    >>> sorted(p.name for p in d.iterdir())
    ['x.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def write_text(path: Path | str, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(df: pl.DataFrame, path: Path | str) -> Path:
    """Write a polars frame to parquet atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)
    return path


def _holder(fd: int) -> str:
    """What the lock file says about its holder (its pid), for the error message."""
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


@contextlib.contextmanager
def file_lock(
    path: Path | str,
    timeout: float | None = 0.0,
    *,
    what: str = "",
    stop: threading.Event | None = None,
) -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the ``with`` body.

    The lock is :func:`fcntl.flock` on an open file, so the kernel releases it when the
    holder exits or is killed: a crash never leaves a stale lock behind, and the lock file
    itself can stay where it is (deleting it would let two processes lock two different
    files of the same name). The holder's pid is written into the file for the message a
    waiting process prints. Locks are per open file: a second ``file_lock`` of the same path
    in the same process is refused too.

    Args:
        path: The lock file, e.g. ``<data-dir>/.mvtec_ad.lock``; its folder is created.
        timeout: Seconds to wait for a lock held by another process: ``0`` fails at once,
            ``None`` waits as long as it takes.
        what: Names what the lock protects in the error message (``"dataset mvtec_ad"``).
        stop: Stop waiting as soon as this event is set (raises :class:`LockBusyError`).

    Raises:
        LockBusyError: The lock is still held after ``timeout`` seconds; the message names
            the lock file and the holder's pid.

    >>> import tempfile
    >>> lock = Path(tempfile.mkdtemp()) / "x.lock"
    >>> with file_lock(lock):
    ...     try:
    ...         with file_lock(lock, what="the example"):
    ...             pass
    ...     except LockBusyError as exc:
    ...         print(str(exc).split(";")[0].startswith("the example is in use"))
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                late = deadline is not None and time.monotonic() >= deadline
                if late or (stop is not None and stop.is_set()):
                    waited = "" if not timeout else f" after waiting {timeout:g} s"
                    msg = (
                        f"{what or path} is in use by another process{_holder(fd)}{waited}; "
                        f"wait for it to finish (or stop it) and run again. Lock file: {path}"
                    )
                    raise LockBusyError(msg) from None
                time.sleep(LOCK_POLL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
