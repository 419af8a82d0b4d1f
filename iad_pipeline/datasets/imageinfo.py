"""Cheap facts about an image file: size from the header, content hash, truncation.

No pixel data is decoded. Truncation is detected from the container's end marker (PNG's
IEND chunk, JPEG's EOI marker, BMP's declared file size), which is what a cut-off download
or copy loses first.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

PNG_IEND = b"IEND\xaeB`\x82"
JPEG_EOI = b"\xff\xd9"


class ImageFault(Exception):  # noqa: N818 - a value carried back, not raised to users
    """An image that cannot be used, with a quarantine reason code."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # "unreadable" or "truncated"
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int
    height: int
    sha256: str


def inspect(path: Path, *, want_hash: bool = True) -> ImageInfo:
    """Read ``path`` once: header size, sha256 of the bytes, truncation check.

    Raises:
        ImageFault: the file is missing, empty, not an image, or truncated.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageFault("unreadable", f"cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise ImageFault("unreadable", "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                fmt = im.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageFault("unreadable", f"not a readable image: {exc}") from exc
    _check_complete(data, fmt)
    digest = hashlib.sha256(data).hexdigest() if want_hash else ""
    return ImageInfo(width, height, digest)


def _check_complete(data: bytes, fmt: str | None) -> None:
    if fmt == "PNG" and not data.rstrip(b"\x00").endswith(PNG_IEND):
        raise ImageFault("truncated", f"PNG has no IEND chunk at its end ({len(data)} bytes)")
    if fmt == "JPEG" and JPEG_EOI not in data[-1024:]:
        raise ImageFault("truncated", f"JPEG has no end-of-image marker ({len(data)} bytes)")
    if fmt == "BMP" and len(data) >= 6:
        (declared,) = struct.unpack_from("<I", data, 2)
        if declared > len(data):
            raise ImageFault("truncated", f"BMP declares {declared} bytes, file has {len(data)}")
