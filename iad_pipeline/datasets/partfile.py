"""The files of one download: the final file, its ``.part``, and the records beside them.

``<name>.part`` holds the bytes received so far and ``<name>.part.json`` the URL and the
validators (``ETag``, ``Last-Modified``, size) they came with, so a resume can ask the server
whether the file changed (``If-Range``). :class:`PartFile` keeps a running sha256 of the part
across attempts. A finished file without a published digest gets ``<name>.sha256`` (what we
recorded, so the next call can reuse it); one with a wrong digest is moved to
``<name>.corrupt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import requests

from iad_pipeline import fsutil
from iad_pipeline.errors import ChecksumMismatchError, DownloadError, InsufficientDiskSpaceError

if TYPE_CHECKING:
    from iad_pipeline.datasets.resume import Tally, Target

logger = logging.getLogger(__name__)

DISK_MARGIN = 64 * 1024 * 1024
"""Bytes of free space kept in reserve on top of what a download needs."""
_QUEUE_CHUNKS = 16  # chunks in flight between the reading and the writing thread


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download` did.

    Attributes:
        path: The final file.
        sha256: Hex digest of the final file.
        size: Size of the final file in bytes.
        bytes_transferred: Body bytes received over the network during this call, summed over
            every attempt (a restart from zero counts the discarded bytes too).
        reused: The file was already in place and its hash verified; nothing was downloaded.
        resumed: At least one attempt continued an existing ``.part`` file (a ``206`` answer
            to a ``Range`` request, or a ``416`` that confirmed the part was complete).
    """

    path: Path
    sha256: str
    size: int
    bytes_transferred: int
    reused: bool
    resumed: bool


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks of ``chunk_size`` bytes.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    """
    return hash_into(hashlib.sha256(), Path(path), chunk_size).hexdigest()


def hash_into(hasher: Any, path: Path, chunk_size: int = 1 << 20) -> Any:
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            hasher.update(chunk)
    return hasher


class PartFile:
    """The ``.part`` file and a running sha256 of the bytes it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._hasher = hashlib.sha256()
        self._hashed = 0  # bytes of the file that ``_hasher`` has seen

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    @property
    def record_path(self) -> Path:
        """``<name>.part.json``: the URL and validators the part's bytes came with."""
        return self.path.with_name(self.path.name + ".json")

    def read_record(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def write_record(self, url: str, resp: requests.Response, total: int | None) -> None:
        etag = resp.headers.get("ETag")
        record = {
            "url": url,
            # A weak ETag may not be used with If-Range (RFC 9110 section 13.1.5).
            "etag": etag if etag and not etag.startswith("W/") else None,
            "last_modified": resp.headers.get("Last-Modified"),
            "total": total,
        }
        fsutil.write_json(self.record_path, record)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.record_path.unlink(missing_ok=True)
        self._hasher, self._hashed = hashlib.sha256(), 0

    def hexdigest(self) -> str:
        self._catch_up()
        return self._hasher.hexdigest()

    def _catch_up(self) -> None:
        # The hasher is carried across attempts; it is rebuilt from the file when the file no
        # longer has the length the hasher saw (a part left by an earlier run, a failed write).
        size = self.size()
        if size != self._hashed:
            self._hasher = hash_into(hashlib.sha256(), self.path) if size else hashlib.sha256()
            self._hashed = size

    def append(self, chunks: Iterator[bytes], on_chunk: Callable[[int], None]) -> None:
        """Write and hash ``chunks`` in a second thread while this one reads the socket.

        sha256 and file writes release the GIL, so reading overlaps with them; on loopback the
        hash alone is slower than the socket. Every chunk that was read is written before this
        returns or raises, so a resume starts exactly after the last byte received. A write
        error (disk full) wins over a read error, since it is the one the user must fix.
        """
        self._catch_up()
        pending: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        write_errors: list[BaseException] = []

        def drain(fh: BinaryIO) -> None:
            while (chunk := pending.get()) is not None:
                if write_errors:
                    continue  # keep taking chunks so the reader never blocks on a full queue
                try:
                    fh.write(chunk)
                    self._hasher.update(chunk)
                    self._hashed += len(chunk)
                except BaseException as exc:  # handed to the reading thread below
                    write_errors.append(exc)

        with open(self.path, "ab") as fh:
            writer = threading.Thread(target=drain, args=(fh,), name="download-writer")
            writer.start()
            try:
                for chunk in chunks:
                    if write_errors:
                        break
                    pending.put(chunk)
                    on_chunk(len(chunk))
            except BaseException as read_error:
                pending.put(None)
                writer.join()
                if write_errors:
                    raise write_errors[0] from read_error
                raise
            finally:
                if writer.is_alive():
                    pending.put(None)
                    writer.join()
                fh.flush()
                os.fsync(fh.fileno())
            if write_errors:
                raise write_errors[0]


def suffixed(dest: Path, suffix: str) -> Path:
    return dest.with_name(dest.name + suffix)


def reuse_existing(dest: Path, sha256: str | None) -> DownloadResult | None:
    """Hash an existing ``dest``; return a result if it can be kept, else move it aside."""
    if not dest.exists():
        return None
    if not dest.is_file():
        msg = (
            f"Download destination {dest} exists and is not a file. "
            "Move it away or pick another destination."
        )
        raise DownloadError(msg)
    digest = sha256_file(dest)
    if sha256 is None:
        sidecar = suffixed(dest, ".sha256")
        recorded = sidecar.read_text(errors="replace").split()[:1] if sidecar.is_file() else []
        if recorded == [digest]:
            logger.info("Reusing %s (sha256 %s matches %s)", dest, digest, sidecar.name)
            return DownloadResult(dest, digest, dest.stat().st_size, 0, True, False)
        logger.warning("%s has no matching %s record; downloading it again", dest, sidecar.name)
        return None
    if digest == sha256:
        logger.info("Reusing %s (sha256 verified)", dest)
        return DownloadResult(dest, digest, dest.stat().st_size, 0, True, False)
    corrupt = suffixed(dest, ".corrupt")
    logger.warning(
        "%s has sha256 %s, expected %s (truncated or stale); moved it to %s and downloading again",
        dest,
        digest,
        sha256,
        corrupt.name,
    )
    os.replace(dest, corrupt)
    return None


def require_free_space(
    folder: Path, needed: int, doing: str, fix: str = "choose another data folder"
) -> None:
    """Refuse ``doing`` ("download URL", "extract ARCHIVE") before anything is written when
    ``folder``'s disk lacks ``needed`` bytes plus :data:`DISK_MARGIN`; ``fix`` ends the
    message ("Free some space or {fix}.")."""
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        mib = 1024 * 1024
        msg = (
            f"Not enough free space in {folder} to {doing}: need {needed / mib:.1f} MiB "
            f"(+{DISK_MARGIN // mib} MiB margin), found {free / mib:.1f} MiB free. "
            f"Free some space or {fix}."
        )
        raise InsufficientDiskSpaceError(msg)


def install(part: PartFile, dest: Path, tally: Tally, target: Target) -> DownloadResult:
    """Check the finished part's hash, then rename it onto ``dest`` (or aside if wrong)."""
    digest = part.hexdigest()
    size = part.size()
    if target.sha256 is not None and digest != target.sha256:
        corrupt = suffixed(dest, ".corrupt")
        os.replace(part.path, corrupt)
        part.record_path.unlink(missing_ok=True)
        msg = (
            f"{target.url} served a file with sha256 {digest}, expected {target.sha256}. "
            f"The bytes are kept in {corrupt} for inspection. The link may now serve a "
            "different file: check the dataset's page, and if the new file is legitimate "
            f"pass --sha256 {digest}."
        )
        raise ChecksumMismatchError(with_hint(msg, target.hint))
    os.replace(part.path, dest)
    part.record_path.unlink(missing_ok=True)
    sidecar = suffixed(dest, ".sha256")
    if target.sha256 is None or sidecar.exists():  # never leave a record that lies
        fsutil.write_text(sidecar, f"{digest}  {dest.name}\n")
    logger.info("Downloaded %s (%d bytes, sha256 %s)", dest, size, digest)
    return DownloadResult(dest, digest, size, tally.bytes_transferred, False, tally.resumed)


def with_hint(msg: str, hint: str) -> str:
    """``msg``, then the hint (e.g. how to pass another URL) when there is one."""
    return f"{msg} {hint}" if hint else msg
