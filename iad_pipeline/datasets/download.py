"""Resumable, verified HTTP downloads.

:func:`download` streams a URL into ``<dest>.part`` beside the destination, hashing while it
writes, and renames the part onto ``dest`` only after the sha256 matched. What it does that
anomalib's ``download_and_extract`` does not (see ``shared/reference/datasets.md`` section 2):

* an existing file is hashed on every call, so a truncated archive is never reused;
* an interrupted transfer resumes with an HTTP ``Range`` request from what the ``.part`` holds,
  within the same call (retries) and across calls (re-running the command). The resume
  carries ``If-Range`` with the validator the part was started under (a strong ``ETag``,
  else ``Last-Modified``, kept in ``<name>.part.json``), so a server whose file changed
  answers with the whole new file and the download restarts from zero instead of splicing
  two versions; without any validator a part is only resumed when a sha256 will check it;
* every attempt has a total deadline (``attempt_deadline``), so a server that trickles a
  byte every few seconds, never tripping the per-read timeout, is cut off and retried;
* connection errors, stalls and 5xx answers are retried with exponential backoff and full
  jitter; 404/410 say that the link has probably moved and how to pass a new one;
* free disk space is checked before the body is written;
* a file with the wrong hash is kept as ``<dest>.corrupt`` for inspection, never renamed into
  place.

Bodies are read raw (``Accept-Encoding: identity`` and no transparent decoding), so the bytes
on disk are the bytes the server stores: a server that labels a ``.tar.gz`` with
``Content-Encoding: gzip`` would otherwise hand us the decompressed tar and a wrong hash.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import queue
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from tqdm import tqdm

from iad_pipeline import fsutil, limits
from iad_pipeline.errors import (
    ChecksumMismatchError,
    DownloadError,
    InsufficientDiskSpaceError,
    LinkMovedError,
)

logger = logging.getLogger(__name__)

DISK_MARGIN = 64 * 1024 * 1024
"""Bytes of free space kept in reserve on top of what a download needs."""

MAX_BACKOFF = 60.0
"""Longest sleep between two attempts, in seconds."""

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_RETRY_STATUS = frozenset({408, 429})  # plus every 5xx
_MAX_RESTARTS = 3
_QUEUE_CHUNKS = 16  # chunks in flight between the reading and the writing thread
# Errors of the network or the peer; the part file keeps what arrived and the next attempt
# resumes. requests' SSLError (a certificate problem) is caught before these: retrying it
# cannot help.
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    urllib3.exceptions.SSLError,
)


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
    return _hash_into(hashlib.sha256(), Path(path), chunk_size).hexdigest()


def _hash_into(hasher: Any, path: Path, chunk_size: int = 1 << 20) -> Any:
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            hasher.update(chunk)
    return hasher


def backoff_delay(attempt: int, backoff: float) -> float:
    """Seconds to sleep before retry number ``attempt + 1``: full jitter, capped.

    A uniform draw in ``[0, min(MAX_BACKOFF, backoff * 2**attempt)]``, so that clients that
    failed together do not come back together.

    >>> 0.0 <= backoff_delay(0, 1.0) <= 1.0
    True
    >>> backoff_delay(30, 1.0) <= MAX_BACKOFF
    True
    """
    return random.uniform(0.0, min(MAX_BACKOFF, backoff * 2.0**attempt))


class _Transient(Exception):
    """An attempt failed in a way that a later attempt may not (internal)."""


class _Restart(Exception):
    """The part file was discarded; start again from zero right away (internal)."""


class _Deadline(Exception):
    """An attempt ran past its total deadline (internal; becomes a :class:`_Transient`)."""


@dataclass
class _Tally:
    bytes_transferred: int = 0
    resumed: bool = False
    attempt_started: float = 0.0


class _PartFile:
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
            self._hasher = _hash_into(hashlib.sha256(), self.path) if size else hashlib.sha256()
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


def _suffixed(dest: Path, suffix: str) -> Path:
    return dest.with_name(dest.name + suffix)


def _with_hint(msg: str, hint: str) -> str:
    return f"{msg} {hint}" if hint else msg


def _check_arguments(url: str, sha256: str | None, hint: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" in the host
        msg = f"Cannot download {url!r}: it is not a valid URL ({exc}). Pass --url URL."
        raise DownloadError(_with_hint(msg, hint)) from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        msg = (
            f"Cannot download {url!r}: only http:// and https:// URLs are supported, "
            f"found scheme {parts.scheme or '(none)'!r}. Pass a full http(s) link with --url URL."
        )
        raise DownloadError(_with_hint(msg, hint))
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not _SHA256_RE.match(digest):
        msg = (
            f"Expected sha256 for {url} is {sha256!r}, which is not 64 hex digits. "
            "Pass the digest exactly as published (or no --sha256 to skip the check)."
        )
        raise DownloadError(msg)
    return digest


def _reuse_existing(dest: Path, sha256: str | None) -> DownloadResult | None:
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
        sidecar = _suffixed(dest, ".sha256")
        recorded = sidecar.read_text(errors="replace").split()[:1] if sidecar.is_file() else []
        if recorded == [digest]:
            logger.info("Reusing %s (sha256 %s matches %s)", dest, digest, sidecar.name)
            return DownloadResult(dest, digest, dest.stat().st_size, 0, True, False)
        logger.warning("%s has no matching %s record; downloading it again", dest, sidecar.name)
        return None
    if digest == sha256:
        logger.info("Reusing %s (sha256 verified)", dest)
        return DownloadResult(dest, digest, dest.stat().st_size, 0, True, False)
    corrupt = _suffixed(dest, ".corrupt")
    logger.warning(
        "%s has sha256 %s, expected %s (truncated or stale); moved it to %s and downloading again",
        dest,
        digest,
        sha256,
        corrupt.name,
    )
    os.replace(dest, corrupt)
    return None


def _check_status(resp: requests.Response, url: str, hint: str) -> None:
    status = resp.status_code
    if status in (404, 410):
        msg = (
            f"{url} answered HTTP {status}: the link may have moved. Find the current link on "
            "the dataset's page and pass it with --url URL."
        )
        raise LinkMovedError(_with_hint(msg, hint))
    if status >= 500 or status in _RETRY_STATUS:
        msg = f"HTTP {status} {resp.reason}"
        raise _Transient(msg)
    if status not in (200, 206, 416):
        msg = (
            f"{url} answered HTTP {status} {resp.reason}; expected 200 with the file. "
            "Check that the link is public and still valid, or pass another with --url URL."
        )
        raise DownloadError(_with_hint(msg, hint))


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``(start, end, total)`` of a ``Content-Range`` header; unknown parts are ``None``.

    >>> _parse_content_range("bytes 10-99/100")
    (10, 99, 100)
    >>> _parse_content_range("bytes */100")
    (None, None, 100)
    >>> _parse_content_range("bytes 0-9/*")
    (0, 9, None)
    """
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value or "")
    if match is None:
        return None, None, None
    start, end, total = (int(g) if g and g != "*" else None for g in match.groups())
    return start, end, total


def _body_window(resp: requests.Response, url: str) -> tuple[int, int | None]:
    """Offset of the first body byte in the file, and the file's size once the body is in."""
    length = resp.headers.get("Content-Length")
    length_n = int(length) if length and length.isdigit() else None
    if resp.status_code == 200:
        return 0, length_n
    start, end, total = _parse_content_range(resp.headers.get("Content-Range"))
    if start is None or end is None:
        msg = (
            f"{url} answered 206 with an unreadable Content-Range "
            f"{resp.headers.get('Content-Range')!r}; expected 'bytes START-END/TOTAL'. "
            "Delete the .part file to download from scratch."
        )
        raise DownloadError(msg)
    return start, end + 1 if total is None else total


def _check_disk_space(folder: Path, needed: int, url: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        mib = 1024 * 1024
        msg = (
            f"Not enough free space in {folder} to download {url}: need {needed / mib:.1f} MiB "
            f"(+{DISK_MARGIN // mib} MiB margin), found {free / mib:.1f} MiB free. "
            "Free some space or choose another data folder."
        )
        raise InsufficientDiskSpaceError(msg)


def _raw_chunks(resp: requests.Response, chunk_size: int, deadline: float) -> Iterator[bytes]:
    # read1 returns what one socket read gives (at most chunk_size): bytes that arrived
    # before a reset are handed over, not lost inside a buffer that was being filled.
    # urllib3 < 2.3 has no read1; its read(amt) is the fallback.
    read = getattr(resp.raw, "read1", None) or resp.raw.read
    while chunk := read(chunk_size, decode_content=False):
        yield chunk
        if time.monotonic() > deadline:
            # Each read is bounded by the read timeout, so the attempt ends at most one read
            # timeout after its deadline; the bytes received so far are kept and resumed.
            raise _Deadline


@dataclass(frozen=True)
class _Options:
    url: str
    sha256: str | None
    timeout: float
    chunk_size: int
    progress: bool
    desc: str
    hint: str
    attempt_deadline: float = limits.DOWNLOAD_DEADLINE


def _finish_after_416(
    resp: requests.Response, part: _PartFile, offset: int, opts: _Options
) -> None:
    """The server says the part already covers the file: keep it if it checks out."""
    if not offset:
        msg = f"{opts.url} answered HTTP 416 to a request without Range."
        raise DownloadError(_with_hint(msg, opts.hint))
    _, _, total = _parse_content_range(resp.headers.get("Content-Range"))
    # Without a digest, the server's total size is the only evidence that the part is whole.
    complete = total == offset if opts.sha256 is None else part.hexdigest() == opts.sha256
    if complete:
        logger.info("%s is already complete (HTTP 416 to the resume request)", part.path)
        return
    logger.warning(
        "%s does not match what %s serves (HTTP 416, server size %s); discarding it",
        part.path,
        opts.url,
        total,
    )
    part.discard()
    raise _Restart


def _align(
    resp: requests.Response, part: _PartFile, offset: int, opts: _Options, tally: _Tally
) -> tuple[int, int | None]:
    """Match the answer's first byte to the part: append, restart at zero, or start over.

    Returns the offset the body is written at and the file size expected after it.
    """
    start, expected = _body_window(resp, opts.url)
    if start == offset and offset:
        changed = _changed_since(part.read_record(), resp, expected)
        if changed:
            logger.warning(
                "%s changed since %s was started (%s); discarding it and restarting from zero",
                opts.url,
                part.path.name,
                changed,
            )
            part.discard()
            raise _Restart
        tally.resumed = True
        logger.info("Resuming %s at byte %d", opts.url, offset)
        return offset, expected
    if start == 0:
        if offset:
            changed = _changed_since(part.read_record(), resp, expected)
            why = f"its file changed: {changed}" if changed else "it ignores Range requests"
            logger.warning(
                "%s answered with the whole file (%s); discarding %d bytes, restarting from zero",
                opts.url,
                why,
                offset,
            )
            part.discard()
        return 0, expected
    if offset == 0:
        msg = f"{opts.url} sent bytes from {start} on to a request without Range."
        raise DownloadError(_with_hint(msg, opts.hint))
    logger.warning(
        "%s answered from byte %d, asked for %d; restarting from zero", opts.url, start, offset
    )
    part.discard()
    raise _Restart


def _changed_since(
    record: dict[str, Any] | None, resp: requests.Response, total: int | None
) -> str:
    """Why a ``206`` answer cannot continue the part (empty if it can).

    The server honoured ``If-Range``, but a proxy may not: the answer's own validators and
    total size must still be those the part was started with.
    """
    if record is None:  # a part of an earlier version of iad; the sha256 will check it
        return ""
    etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
    if record.get("etag") and etag and etag != record["etag"]:
        return f"ETag {record['etag']} -> {etag}"
    if record.get("last_modified") and modified and modified != record["last_modified"]:
        return f"Last-Modified {record['last_modified']} -> {modified}"
    if record.get("total") is not None and total is not None and total != record["total"]:
        return f"size {record['total']} -> {total}"
    return ""


def _receive(
    resp: requests.Response,
    part: _PartFile,
    offset: int,
    expected: int | None,
    opts: _Options,
    tally: _Tally,
) -> None:
    """Append the body to the part file, with a progress bar."""
    bar = tqdm(
        total=expected,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=opts.desc,
        disable=None if opts.progress else True,
        leave=False,
    )

    def received(n: int) -> None:
        tally.bytes_transferred += n
        bar.update(n)

    deadline = tally.attempt_started + opts.attempt_deadline
    with bar:
        part.append(_raw_chunks(resp, opts.chunk_size, deadline), received)


def _attempt(session: requests.Session, part: _PartFile, opts: _Options, tally: _Tally) -> None:
    """One request: append to the part file until the body ends; raise unless complete."""
    offset = part.size()
    headers = {"Accept-Encoding": "identity"}
    if offset:
        record = part.read_record()
        if record is not None and record.get("url") != opts.url:
            logger.warning("%s holds bytes of another URL; restarting from zero", part.path)
            part.discard()
            offset = 0
        elif record is None and opts.sha256 is None:
            # Nothing would notice bytes of two versions spliced together.
            logger.warning(
                "%s has no record of the version it came from and no sha256 will check it; "
                "restarting from zero",
                part.path,
            )
            part.discard()
            offset = 0
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = record and (record.get("etag") or record.get("last_modified"))
        if validator:
            headers["If-Range"] = validator
    tally.attempt_started = time.monotonic()
    try:
        with session.get(opts.url, headers=headers, stream=True, timeout=opts.timeout) as resp:
            _check_status(resp, opts.url, opts.hint)
            if resp.status_code == 416:
                _finish_after_416(resp, part, offset, opts)
                tally.resumed = True
                return
            offset, expected = _align(resp, part, offset, opts, tally)
            if expected is not None:
                _check_disk_space(part.path.parent, expected - offset, opts.url)
            if offset == 0:  # a new part: remember the version its bytes come from
                part.write_record(opts.url, resp, expected)
            _receive(resp, part, offset, expected, opts, tally)
    except _Deadline as exc:
        msg = f"the attempt ran past its deadline of {opts.attempt_deadline:g} s"
        raise _Transient(msg) from exc
    except requests.exceptions.SSLError as exc:
        msg = f"TLS error talking to {opts.url}: {exc}. Check the system's certificates."
        raise DownloadError(_with_hint(msg, opts.hint)) from exc
    except _TRANSIENT as exc:
        # urllib3 packs (message, cause) into args; the message alone reads better in logs.
        first = exc.args[0] if exc.args else exc
        raise _Transient(first if isinstance(first, str) else str(exc)) from exc
    except requests.RequestException as exc:  # invalid URL, too many redirects, ...
        msg = f"Cannot download {opts.url}: {exc}. Check the link or pass another with --url URL."
        raise DownloadError(_with_hint(msg, opts.hint)) from exc
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        msg = (
            f"The disk holding {part.path} filled up while downloading {opts.url}; "
            f"{part.size()} bytes are kept there. Free some space and run again to resume."
        )
        raise InsufficientDiskSpaceError(msg) from exc
    size = part.size()
    if expected is not None and size < expected:
        msg = f"connection closed after {size} of {expected} bytes"
        raise _Transient(msg)
    if expected is not None and size > expected:
        logger.warning(
            "%s is longer than the file (%d > %d); discarding it", part.path, size, expected
        )
        part.discard()
        raise _Restart


def _install(part: _PartFile, dest: Path, tally: _Tally, opts: _Options) -> DownloadResult:
    """Check the finished part's hash, then rename it onto ``dest`` (or aside if wrong)."""
    digest = part.hexdigest()
    size = part.size()
    if opts.sha256 is not None and digest != opts.sha256:
        corrupt = _suffixed(dest, ".corrupt")
        os.replace(part.path, corrupt)
        part.record_path.unlink(missing_ok=True)
        msg = (
            f"{opts.url} served a file with sha256 {digest}, expected {opts.sha256}. "
            f"The bytes are kept in {corrupt} for inspection. The link may now serve a "
            "different file: check the dataset's page, and if the new file is legitimate "
            f"pass --sha256 {digest}."
        )
        raise ChecksumMismatchError(_with_hint(msg, opts.hint))
    os.replace(part.path, dest)
    part.record_path.unlink(missing_ok=True)
    sidecar = _suffixed(dest, ".sha256")
    if opts.sha256 is None or sidecar.exists():  # never leave a record that lies
        fsutil.write_text(sidecar, f"{digest}  {dest.name}\n")
    logger.info("Downloaded %s (%d bytes, sha256 %s)", dest, size, digest)
    return DownloadResult(dest, digest, size, tally.bytes_transferred, False, tally.resumed)


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    progress: bool = True,
    desc: str | None = None,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    hint: str = "",
    attempt_deadline: float | None = None,
) -> DownloadResult:
    """Download ``url`` to ``dest``, resuming and verifying; reuse ``dest`` if it checks out.

    Args:
        url: An ``http://`` or ``https://`` link.
        dest: Final path of the file; its folder is created if needed. Beside it live
            ``<name>.part`` (bytes received so far), ``<name>.corrupt`` (a file that failed
            its hash) and, when ``sha256`` is ``None``, ``<name>.sha256`` (the digest we
            recorded, so that the next call can reuse the file).
        sha256: Expected hex digest (case-insensitive), or ``None`` when none is published.
        retries: Attempts after the first one, on connection errors, stalls and 5xx answers.
        backoff: Base of the exponential backoff in seconds (see :func:`backoff_delay`).
        timeout: Seconds to wait for the connection and for each read.
        chunk_size: Largest read from the network, in bytes.
        progress: Show a tqdm bar (only when stderr is a terminal).
        desc: Label of the bar; the file name by default.
        session: A :class:`requests.Session` to reuse (a new one is made and closed if None).
        sleep: Called with the backoff delay; tests pass a no-op.
        hint: Appended to error messages, e.g. the environment variable that overrides the URL.
        attempt_deadline: Longest time of one attempt in seconds, however slowly bytes come
            (``None``: ``IAD_DOWNLOAD_DEADLINE``, see :mod:`iad_pipeline.limits`); an attempt
            cut off by it keeps its bytes and counts as a failed attempt. With the
            backoff capped at :data:`MAX_BACKOFF`, a call lasts at most about
            ``(retries + 1) * (attempt_deadline + timeout) + retries * MAX_BACKOFF``.

    Returns:
        A :class:`DownloadResult`.

    Raises:
        DownloadError: Bad URL or digest, a refused request, or retries exhausted (the
            ``.part`` file is kept, and running again resumes from it).
        LinkMovedError: The server answered 404 or 410.
        ChecksumMismatchError: The downloaded bytes have another sha256 (they are kept as
            ``<name>.corrupt``).
        InsufficientDiskSpaceError: The folder has less free space than the file needs.
    """
    dest = Path(dest)
    expected = _check_arguments(url, sha256, hint)
    dest.parent.mkdir(parents=True, exist_ok=True)
    reused = _reuse_existing(dest, expected)
    if reused is not None:
        return reused
    if attempt_deadline is None:
        attempt_deadline = limits.download_deadline()
    if not attempt_deadline > 0:
        msg = f"attempt_deadline={attempt_deadline!r}; expected seconds > 0"
        raise DownloadError(msg)
    opts = _Options(
        url, expected, timeout, chunk_size, progress, desc or dest.name, hint, attempt_deadline
    )
    part = _PartFile(_suffixed(dest, ".part"))
    tally = _Tally()
    own_session = session is None
    session = requests.Session() if session is None else session
    failures = restarts = 0
    try:
        while True:
            try:
                _attempt(session, part, opts, tally)
                break
            except _Restart as exc:
                # Each restart drops the Range header, so a sane server cannot cause a second.
                restarts += 1
                if restarts > _MAX_RESTARTS:
                    msg = (
                        f"{url} kept answering resume requests inconsistently; gave up after "
                        f"{_MAX_RESTARTS} restarts from zero. Try again later or another --url."
                    )
                    raise DownloadError(_with_hint(msg, hint)) from exc
            except _Transient as exc:
                if failures >= retries:
                    raise DownloadError(_exhausted_message(opts, part, failures, exc)) from exc
                delay = backoff_delay(failures, backoff)
                failures += 1
                logger.warning(
                    "Download of %s failed (%s); retry %d of %d in %.1f s from byte %d",
                    url,
                    exc,
                    failures,
                    retries,
                    delay,
                    part.size(),
                )
                sleep(delay)
    finally:
        if own_session:
            session.close()
    return _install(part, dest, tally, opts)


def _exhausted_message(opts: _Options, part: _PartFile, failures: int, exc: Exception) -> str:
    kept = part.size()
    if kept:
        kept_msg = (
            f"{kept} bytes are kept in {part.path}; re-running the same command resumes from there."
        )
    else:
        kept_msg = "Nothing was received; check the network and the link, then run again."
    msg = f"Downloading {opts.url} failed after {failures} retries (last error: {exc}). {kept_msg}"
    return _with_hint(msg, opts.hint)
