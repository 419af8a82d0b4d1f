"""How a server's answer lines up with the bytes a ``.part`` file already holds.

A resume asks for ``Range: bytes=<part size>-`` with ``If-Range``; the answer may continue the
part (``206`` from that byte), replace it (``200``: the file changed or the server ignores
ranges), confirm it is complete (``416``), or start elsewhere (a broken proxy). Each case
either says where the body goes or raises :class:`Restart` after discarding the part.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import requests

from iad_pipeline.datasets.partfile import PartFile, with_hint
from iad_pipeline.errors import DownloadError

logger = logging.getLogger(__name__)


class Restart(Exception):
    """The part file was discarded; start again from zero right away."""


@dataclass
class Tally:
    """What a download did so far, across its attempts."""

    bytes_transferred: int = 0
    resumed: bool = False
    attempt_started: float = 0.0


@dataclass(frozen=True)
class Target:
    """What one download asks for: the URL, the expected digest and the hint for errors."""

    url: str
    sha256: str | None
    hint: str = ""


def parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``(start, end, total)`` of a ``Content-Range`` header; unknown parts are ``None``.

    >>> parse_content_range("bytes 10-99/100")
    (10, 99, 100)
    >>> parse_content_range("bytes */100")
    (None, None, 100)
    >>> parse_content_range("bytes 0-9/*")
    (0, 9, None)
    """
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value or "")
    if match is None:
        return None, None, None
    start, end, total = (int(g) if g and g != "*" else None for g in match.groups())
    return start, end, total


def body_window(resp: requests.Response, url: str) -> tuple[int, int | None]:
    """Offset of the first body byte in the file, and the file's size once the body is in."""
    length = resp.headers.get("Content-Length")
    length_n = int(length) if length and length.isdigit() else None
    if resp.status_code == 200:
        return 0, length_n
    start, end, total = parse_content_range(resp.headers.get("Content-Range"))
    if start is None or end is None:
        msg = (
            f"{url} answered 206 with an unreadable Content-Range "
            f"{resp.headers.get('Content-Range')!r}; expected 'bytes START-END/TOTAL'. "
            "Delete the .part file to download from scratch."
        )
        raise DownloadError(msg)
    return start, end + 1 if total is None else total


def finish_after_416(resp: requests.Response, part: PartFile, offset: int, target: Target) -> None:
    """The server says the part already covers the file: keep it if it checks out."""
    if not offset:
        msg = f"{target.url} answered HTTP 416 to a request without Range."
        raise DownloadError(with_hint(msg, target.hint))
    _, _, total = parse_content_range(resp.headers.get("Content-Range"))
    # Without a digest, the server's total size is the only evidence that the part is whole.
    complete = total == offset if target.sha256 is None else part.hexdigest() == target.sha256
    if complete:
        logger.info("%s is already complete (HTTP 416 to the resume request)", part.path)
        return
    logger.warning(
        "%s does not match what %s serves (HTTP 416, server size %s); discarding it",
        part.path,
        target.url,
        total,
    )
    part.discard()
    raise Restart


def align(
    resp: requests.Response, part: PartFile, offset: int, target: Target, tally: Tally
) -> tuple[int, int | None]:
    """Match the answer's first byte to the part: append, restart at zero, or start over.

    Returns the offset the body is written at and the file size expected after it.
    """
    start, expected = body_window(resp, target.url)
    if start == offset and offset:
        changed = changed_since(part.read_record(), resp, expected)
        if changed:
            logger.warning(
                "%s changed since %s was started (%s); discarding it and restarting from zero",
                target.url,
                part.path.name,
                changed,
            )
            part.discard()
            raise Restart
        tally.resumed = True
        logger.info("Resuming %s at byte %d", target.url, offset)
        return offset, expected
    if start == 0:
        if offset:
            changed = changed_since(part.read_record(), resp, expected)
            why = f"its file changed: {changed}" if changed else "it ignores Range requests"
            logger.warning(
                "%s answered with the whole file (%s); discarding %d bytes, restarting from zero",
                target.url,
                why,
                offset,
            )
            part.discard()
        return 0, expected
    if offset == 0:
        msg = f"{target.url} sent bytes from {start} on to a request without Range."
        raise DownloadError(with_hint(msg, target.hint))
    logger.warning(
        "%s answered from byte %d, asked for %d; restarting from zero", target.url, start, offset
    )
    part.discard()
    raise Restart


def changed_since(record: dict[str, Any] | None, resp: requests.Response, total: int | None) -> str:
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


def resume_headers(part: PartFile, target: Target) -> dict[str, str]:
    """The request headers: ``Range`` and ``If-Range`` when the part can be continued."""
    headers = {"Accept-Encoding": "identity"}
    if not part.size():
        return headers
    record = part.read_record()
    if record is not None and record.get("url") != target.url:
        logger.warning("%s holds bytes of another URL; restarting from zero", part.path)
        part.discard()
        return headers
    if record is None and target.sha256 is None:
        # Nothing would notice bytes of two versions spliced together.
        logger.warning(
            "%s has no record of the version it came from and no sha256 will check it; "
            "restarting from zero",
            part.path,
        )
        part.discard()
        return headers
    headers["Range"] = f"bytes={part.size()}-"
    validator = record and (record.get("etag") or record.get("last_modified"))
    if validator:
        headers["If-Range"] = validator
    return headers
