"""Cheap facts about an image file: size from the header, content hash, truncation.

No pixel data is decoded: PNG and JPEG sizes are parsed from their headers here (Pillow's
``open`` costs more than hashing the whole file), other formats go through Pillow.
Truncation is detected from the container's end marker (PNG's IEND chunk, JPEG's EOI
marker, BMP's declared file size), which is what a cut-off download or copy loses first.

Only regular files are read, and only what their size says: a FIFO, a device (a link to
``/dev/zero``) or a link that leaves the dataset folder is refused from its metadata
without blocking on it or reading it, and an image whose header declares more than
``max_pixels`` pixels (a decompression bomb, or a corrupt ``0xFFFFFFFF`` width) is refused
before anything would decode it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from iad_pipeline.limits import MAX_IMAGE_PIXELS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"
JPEG_EOI = b"\xff\xd9"


class ImageFault(Exception):
    """An image that cannot be used, with a quarantine reason code."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        # "unreadable", "truncated", "not_regular" (FIFO, device, socket, folder),
        # "outside" (a link out of the dataset folder) or "too_large" (too many pixels)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int
    height: int
    sha256: str


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}
# The most bytes per pixel of a supported format (16-bit RGBA, uncompressed), plus room for
# metadata: a file larger than this cannot hold an image within the pixel limit.
_BYTES_PER_PIXEL = 8
_SLACK = 16 * 1024 * 1024


def _require_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise ImageFault("not_regular", f"{kind}, not a regular file; it is never read")


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    return os.path.realpath(root)


def _opened_path(fd: int, path: Path) -> str:
    """The real path of an open file: one readlink on Linux, a full resolution elsewhere."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def read_regular(path: Path, *, root: Path | None = None, max_bytes: int | None = None) -> bytes:
    """The bytes of ``path`` if it is a regular file (inside ``root`` once links are resolved).

    The file is opened without blocking and checked on the open descriptor, so a FIFO
    never hangs the reader and a file swapped for a device after a check is still caught;
    exactly ``st_size`` bytes are read, never more.

    Raises:
        ImageFault: ``not_regular`` for a FIFO, device, socket or folder; ``outside`` for
            a link leaving ``root``; ``too_large`` above ``max_bytes``; ``unreadable`` for
            OS errors.

    >>> import tempfile
    >>> d, elsewhere = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> (d / "zero.png").symlink_to("/dev/zero")
    >>> read_regular(d / "zero.png", root=d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    iad_pipeline.datasets.imageinfo.ImageFault: a character device, not a regular file; ...
    >>> _ = (elsewhere / "x.png").write_bytes(b"png")
    >>> (d / "out.png").symlink_to(elsewhere / "x.png")
    >>> read_regular(d / "out.png", root=d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    iad_pipeline.datasets.imageinfo.ImageFault: a symlink to /.../x.png, outside the dataset folder
    """
    try:
        # stat before open: opening some devices has effects of its own
        _require_regular(os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ImageFault("unreadable", f"cannot read file: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        _require_regular(st.st_mode)  # the name may have been swapped since the stat
        if root is not None:
            real_root, real = _real_root(str(root)), _opened_path(fd, path)
            if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
                detail = f"a symlink to {real}, outside the dataset folder"
                raise ImageFault("outside", detail)
        if max_bytes is not None and st.st_size > max_bytes:
            detail = f"{st.st_size} bytes, more than an image within the pixel limit can need"
            raise ImageFault("too_large", detail)
        chunks, left = [], st.st_size
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 24))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise ImageFault("unreadable", f"cannot read file: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def inspect(
    path: Path,
    *,
    want_hash: bool = True,
    root: Path | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> ImageInfo:
    """Read ``path`` once: header size, sha256 of the bytes, truncation check.

    Args:
        root: The dataset folder; a link resolving outside it is refused.
        max_pixels: Images declaring more pixels (width x height) are refused.

    Raises:
        ImageFault: the file is missing, empty, not a regular file, not an image, too
            large, or truncated.
    """
    max_bytes = max_pixels * _BYTES_PER_PIXEL + _SLACK
    data = read_regular(path, root=root, max_bytes=max_bytes)
    if not data:
        raise ImageFault("unreadable", "empty file (0 bytes)")
    header = header_size(data)
    if header is not None:
        fmt, width, height = header
    else:
        fmt, width, height = _pillow_size(data)
    if width <= 0 or height <= 0 or max(width, height) >= 2**31:
        raise ImageFault("unreadable", f"header declares an impossible size {width}x{height}")
    if width * height > max_pixels:
        detail = (
            f"{width}x{height} = {width * height} pixels, above the limit of {max_pixels} "
            "(IAD_MAX_IMAGE_PIXELS)"
        )
        raise ImageFault("too_large", detail)
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
    except Image.DecompressionBombError as exc:  # our own pixel limit gives the reason
        raise ImageFault("too_large", str(exc)) from exc
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
