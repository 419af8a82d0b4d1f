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
* connection errors, stalls, 408, 429 and 5xx answers are retried under the project's
  one retry policy (:class:`~iad_pipeline.retry.RetryPolicy`: exponential backoff with
  full jitter, ``Retry-After`` honoured); 404/410 say that the link has probably moved
  and how to pass a new one;
* free disk space is checked before the body is written;
* a file with the wrong hash is kept as ``<dest>.corrupt`` for inspection, never renamed into
  place.

The part file and its records are :mod:`~iad_pipeline.datasets.partfile`; how an answer
lines up with a part is :mod:`~iad_pipeline.datasets.resume`.

Bodies are read raw (``Accept-Encoding: identity`` and no transparent decoding), so the bytes
on disk are the bytes the server stores: a server that labels a ``.tar.gz`` with
``Content-Encoding: gzip`` would otherwise hand us the decompressed tar and a wrong hash.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
import tenacity
import urllib3.exceptions
from tqdm import tqdm

from iad_pipeline import limits
from iad_pipeline.datasets.partfile import (
    DISK_MARGIN,
    DownloadResult,
    PartFile,
    install,
    require_free_space,
    reuse_existing,
    sha256_file,
    suffixed,
    with_hint,
)
from iad_pipeline.datasets.resume import (
    Restart,
    Tally,
    Target,
    align,
    finish_after_416,
    resume_headers,
)
from iad_pipeline.errors import (
    DownloadError,
    InsufficientDiskSpaceError,
    LinkMovedError,
)
from iad_pipeline.retry import RetriesExhausted, RetryPolicy, Transient, retry_after_seconds

__all__ = ["DISK_MARGIN", "DownloadResult", "DownloadSettings", "download", "sha256_file"]

logger = logging.getLogger(__name__)


_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_RETRY_STATUS = frozenset({408, 429})  # plus every 5xx
_MAX_RESTARTS = 3
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
class DownloadSettings:
    """How patiently a file is downloaded.

    Attributes:
        retry: Retries after the first attempt, on connection errors, stalls, 408, 429 and
            5xx answers, and their backoff (see :class:`~iad_pipeline.retry.RetryPolicy`).
        timeout: Seconds to wait for the connection and for each read.
        chunk_size: Largest read from the network, in bytes.
        attempt_deadline: Longest time of one attempt in seconds, however slowly bytes come
            (``None``: ``IAD_DOWNLOAD_DEADLINE``, see :mod:`iad_pipeline.limits`); an attempt
            cut off by it keeps its bytes and counts as a failed attempt. A call lasts at most
            about ``(retries + 1) * (attempt_deadline + timeout) + retries * max_backoff``.
    """

    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(retries=5))
    timeout: float = 60.0
    chunk_size: int = 1 << 20
    attempt_deadline: float | None = None

    def with_retries(self, retries: int) -> DownloadSettings:
        """The same settings with another number of retries."""
        return dataclasses.replace(self, retry=dataclasses.replace(self.retry, retries=retries))


class _Deadline(Exception):
    """An attempt ran past its total deadline."""


@dataclass(frozen=True)
class _Options:
    target: Target
    settings: DownloadSettings
    attempt_deadline: float
    progress: bool
    desc: str


def _check_arguments(url: str, sha256: str | None, hint: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" in the host
        msg = f"Cannot download {url!r}: it is not a valid URL ({exc}). Pass --url URL."
        raise DownloadError(with_hint(msg, hint)) from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        msg = (
            f"Cannot download {url!r}: only http:// and https:// URLs are supported, "
            f"found scheme {parts.scheme or '(none)'!r}. Pass a full http(s) link with --url URL."
        )
        raise DownloadError(with_hint(msg, hint))
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


def _check_status(resp: requests.Response, url: str, hint: str) -> None:
    status = resp.status_code
    if status in (404, 410):
        msg = (
            f"{url} answered HTTP {status}: the link may have moved. Find the current link on "
            "the dataset's page and pass it with --url URL."
        )
        raise LinkMovedError(with_hint(msg, hint))
    if status >= 500 or status in _RETRY_STATUS:
        msg = f"HTTP {status} {resp.reason}"
        raise Transient(msg, retry_after_seconds(resp.headers))
    if status not in (200, 206, 416):
        msg = (
            f"{url} answered HTTP {status} {resp.reason}; expected 200 with the file. "
            "Check that the link is public and still valid, or pass another with --url URL."
        )
        raise DownloadError(with_hint(msg, hint))


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


def _receive(
    resp: requests.Response,
    part: PartFile,
    offset: int,
    expected: int | None,
    opts: _Options,
    tally: Tally,
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
        part.append(_raw_chunks(resp, opts.settings.chunk_size, deadline), received)


def _request(session: requests.Session, part: PartFile, opts: _Options, tally: Tally) -> int | None:
    """Send one request and write its body; the size the file should have (``None``: unknown).

    A 416 answer that confirms the part is complete returns the part's size.
    """
    target = opts.target
    headers = resume_headers(part, target)
    offset = part.size() if "Range" in headers else 0
    tally.attempt_started = time.monotonic()
    timeout = opts.settings.timeout
    with session.get(target.url, headers=headers, stream=True, timeout=timeout) as resp:
        _check_status(resp, target.url, target.hint)
        if resp.status_code == 416:
            finish_after_416(resp, part, offset, target)
            tally.resumed = True
            return part.size()
        offset, expected = align(resp, part, offset, target, tally)
        if expected is not None:
            require_free_space(part.path.parent, expected - offset, f"download {target.url}")
        if offset == 0:  # a new part: remember the version its bytes come from
            part.write_record(target.url, resp, expected)
        _receive(resp, part, offset, expected, opts, tally)
    return expected


def _attempt(session: requests.Session, part: PartFile, opts: _Options, tally: Tally) -> None:
    """One request: append to the part file until the body ends; raise unless complete."""
    url, hint = opts.target.url, opts.target.hint
    try:
        expected = _request(session, part, opts, tally)
    except _Deadline as exc:
        msg = f"the attempt ran past its deadline of {opts.attempt_deadline:g} s"
        raise Transient(msg) from exc
    except requests.exceptions.SSLError as exc:
        msg = f"TLS error talking to {url}: {exc}. Check the system's certificates."
        raise DownloadError(with_hint(msg, hint)) from exc
    except _TRANSIENT as exc:
        # urllib3 packs (message, cause) into args; the message alone reads better in logs.
        first = exc.args[0] if exc.args else exc
        raise Transient(first if isinstance(first, str) else str(exc)) from exc
    except requests.RequestException as exc:  # invalid URL, too many redirects, ...
        msg = f"Cannot download {url}: {exc}. Check the link or pass another with --url URL."
        raise DownloadError(with_hint(msg, hint)) from exc
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        msg = (
            f"The disk holding {part.path} filled up while downloading {url}; "
            f"{part.size()} bytes are kept there. Free some space and run again to resume."
        )
        raise InsufficientDiskSpaceError(msg) from exc
    size = part.size()
    if expected is None:
        return
    if size < expected:
        msg = f"connection closed after {size} of {expected} bytes"
        raise Transient(msg)
    if size > expected:
        logger.warning(
            "%s is longer than the file (%d > %d); discarding it", part.path, size, expected
        )
        part.discard()
        raise Restart


def _attempt_with_restarts(
    session: requests.Session, part: PartFile, opts: _Options, tally: Tally
) -> None:
    """An attempt, started again from zero (not counted as a retry) when the part was dropped.

    Each restart drops the ``Range`` header, so a sane server cannot cause a second.
    """
    for _ in range(_MAX_RESTARTS):
        try:
            _attempt(session, part, opts, tally)
            return
        except Restart:
            continue
    try:
        _attempt(session, part, opts, tally)
    except Restart as exc:
        msg = (
            f"{opts.target.url} kept answering resume requests inconsistently; gave up after "
            f"{_MAX_RESTARTS} restarts from zero. Try again later or another --url."
        )
        raise DownloadError(with_hint(msg, opts.target.hint)) from exc


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    settings: DownloadSettings = DownloadSettings(),
    progress: bool = True,
    session: requests.Session | None = None,
    sleep: Callable[[float], object] = time.sleep,
    hint: str = "",
) -> DownloadResult:
    """Download ``url`` to ``dest``, resuming and verifying; reuse ``dest`` if it checks out.

    Args:
        url: An ``http://`` or ``https://`` link.
        dest: Final path of the file; its folder is created if needed. Beside it live
            ``<name>.part`` (bytes received so far), ``<name>.corrupt`` (a file that failed
            its hash) and, when ``sha256`` is ``None``, ``<name>.sha256`` (the digest we
            recorded, so that the next call can reuse the file).
        sha256: Expected hex digest (case-insensitive), or ``None`` when none is published.
        settings: Retries, timeouts and chunk size (:class:`DownloadSettings`).
        progress: Show a tqdm bar labelled with the file name (only when stderr is a terminal).
        session: A :class:`requests.Session` to reuse (a new one is made and closed if None).
        sleep: Called with the backoff delay; tests pass a recorder.
        hint: Appended to error messages, e.g. the environment variable that overrides the URL.

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
    target = Target(url, _check_arguments(url, sha256, hint), hint)
    dest.parent.mkdir(parents=True, exist_ok=True)
    reused = reuse_existing(dest, target.sha256)
    if reused is not None:
        return reused
    deadline = settings.attempt_deadline
    deadline = limits.download_deadline() if deadline is None else deadline
    if not deadline > 0:
        msg = f"attempt_deadline={deadline!r}; expected seconds > 0"
        raise DownloadError(msg)
    opts = _Options(target, settings, deadline, progress, dest.name)
    part = PartFile(suffixed(dest, ".part"))
    tally = Tally()
    own_session = session is None
    session = requests.Session() if session is None else session
    retries = settings.retry.retries

    def log_retry(state: tenacity.RetryCallState) -> None:
        logger.warning(
            "Download of %s failed (%s); retry %d of %d in %.1f s from byte %d",
            url,
            state.outcome.exception() if state.outcome else "?",
            state.attempt_number,
            retries,
            state.upcoming_sleep,
            part.size(),
        )

    try:
        settings.retry.call(
            lambda _attempt: _attempt_with_restarts(session, part, opts, tally),
            sleep=sleep,
            before_sleep=log_retry,
        )
    except RetriesExhausted as exc:
        raise DownloadError(_exhausted_message(target, part, exc)) from exc.last
    finally:
        if own_session:
            session.close()
    return install(part, dest, tally, target)


def _exhausted_message(target: Target, part: PartFile, exc: RetriesExhausted) -> str:
    kept = part.size()
    if kept:
        kept_msg = (
            f"{kept} bytes are kept in {part.path}; re-running the same command resumes from there."
        )
    else:
        kept_msg = "Nothing was received; check the network and the link, then run again."
    msg = (
        f"Downloading {target.url} failed after {exc.attempts - 1} retries "
        f"(last error: {exc.last}). {kept_msg}"
    )
    return with_hint(msg, target.hint)
