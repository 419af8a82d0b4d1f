"""Cheap facts about an image file: size from the header, content hash, truncation.

No pixel data is decoded: PNG and JPEG sizes are parsed from their headers here (Pillow's
``open`` costs more than hashing the whole file), other formats go through Pillow.
Truncation is detected from the container's end marker (PNG's IEND chunk, JPEG's EOI
marker, BMP's declared file size), which is what a cut-off download or copy loses first.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"
JPEG_EOI = b"\xff\xd9"


class ImageFault(Exception):
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
    header = header_size(data)
    if header is not None:
        fmt, width, height = header
    else:
        fmt, width, height = _pillow_size(data)
    _check_complete(data, fmt)
    digest = hashlib.sha256(data).hexdigest() if want_hash else ""
    return ImageInfo(width, height, digest)


def header_size(data: bytes) -> tuple[str, int, int] | None:
    """``(format, width, height)`` of a PNG or baseline/progressive JPEG, else ``None``.

    >>> import cv2, numpy as np
    >>> png = cv2.imencode(".png", np.zeros((3, 5), np.uint8))[1].tobytes()
    >>> jpg = cv2.imencode(".jpg", np.zeros((7, 9, 3), np.uint8))[1].tobytes()
    >>> header_size(png), header_size(jpg), header_size(b"GIF89a")
    (('PNG', 5, 3), ('JPEG', 9, 7), None)
    """
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack_from(">II", data, 16)
        return "PNG", width, height
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return "JPEG", width, height
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
    return None


def _pillow_size(data: bytes) -> tuple[str | None, int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return im.format, im.size[0], im.size[1]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageFault("unreadable", f"not a readable image: {exc}") from exc


def _check_complete(data: bytes, fmt: str | None) -> None:
    if fmt == "PNG" and not data.rstrip(b"\x00").endswith(PNG_IEND):
        raise ImageFault("truncated", f"PNG has no IEND chunk at its end ({len(data)} bytes)")
    if fmt == "JPEG" and JPEG_EOI not in data[-1024:]:
        raise ImageFault("truncated", f"JPEG has no end-of-image marker ({len(data)} bytes)")
    if fmt == "BMP" and len(data) >= 6:
        (declared,) = struct.unpack_from("<I", data, 2)
        if declared > len(data):
            raise ImageFault("truncated", f"BMP declares {declared} bytes, file has {len(data)}")
