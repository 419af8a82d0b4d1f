"""Safe extraction of dataset archives: zip and tar (plain, gzip, xz, bzip2).

:func:`safe_extract` checks every member before it writes a single byte, and refuses the
archive if one member could write outside the target folder or is not a plain file, folder or
in-archive link:

* absolute names (``/etc/x``, ``\\\\server\\x``, ``C:/x``) and names with a ``..`` component;
* symlinks or hard links whose target is absolute or resolves outside the target folder, or
  that pass through another symlink of the archive (zip symlinks are always refused);
* members that would be written through a symlink of the archive;
* device files, FIFOs and other special members;
* archives that expand to more than ``IAD_MAX_EXTRACT_BYTES`` (100 GiB), or to more than
  ``IAD_MAX_EXTRACT_RATIO`` (100) times their own size once past 64 MiB: a 200 KB zip
  declaring 200 MB of zeros is refused from its member list, before a byte is written (zip
  reads never go past a member's declared size, and a tar's sizes are its real data).

It then extracts into a hidden sibling folder (``.<target>.<random>.extracting``), with the
tar ``data`` filter as a second line of defence, and renames that folder onto ``target`` only
when every member is in: a crash or an error leaves no half-extracted dataset behind, and
``target`` is never overwritten. anomalib, by contrast, filters zip names with a regex on
``etc``/``root`` components and extracts straight into the dataset root.

A tar is read twice (once to check, once to extract); for an xz archive that doubles the
decompression time, the price of checking everything before writing anything.
"""

from __future__ import annotations

import logging
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from iad_pipeline import fsutil, limits
from iad_pipeline.datasets.partfile import require_free_space
from iad_pipeline.errors import IadError, UnsafeArchiveError

logger = logging.getLogger(__name__)

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_SPECIAL_TAR_TYPES = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError)


def archive_kind(path: Path) -> str:
    """``"zip"`` or ``"tar"`` (any compression), detected from the content, not the name.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "data.tar.gz"
    >>> with zipfile.ZipFile(p, "w") as zf:
    ...     zf.writestr("a.txt", "hello")
    >>> archive_kind(p)
    'zip'
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(_ZIP_MAGIC) and zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    if zipfile.is_zipfile(path):  # a zip behind a prefix, e.g. a self-extractor
        return "zip"
    if head.lstrip().startswith(b"<"):
        found = "what looks like an HTML page (a login or error page served instead of the file)"
    else:
        found = f"a file starting with bytes {head[:8].hex(' ')}"
    msg = (
        f"{path} is not a zip or tar archive: found {found}; expected .zip, .tar, .tar.gz, "
        ".tar.xz or .tar.bz2 content. Delete it and download it again (check the link)."
    )
    raise IadError(msg)


def list_members(archive: Path) -> list[str]:
    """Member names of a zip or tar archive, in archive order.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.zip"
    >>> with zipfile.ZipFile(p, "w") as zf:
    ...     zf.writestr("good/001.png", b"")
    ...     zf.writestr("bad/", b"")
    >>> list_members(p)
    ['good/001.png', 'bad/']
    """
    archive = Path(archive)
    if archive_kind(archive) == "zip":
        with zipfile.ZipFile(archive) as zf:
            return zf.namelist()
    with tarfile.open(archive, "r:*") as tf:
        return tf.getnames()


def _refuse(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    msg = (
        f"Refusing to extract {archive}: member {member!r} {why}. Nothing was extracted. "
        "A dataset archive never needs this; the file may be tampered with: delete it, "
        "download it again and check its sha256."
    )
    return UnsafeArchiveError(msg)


def _member_path(archive: Path, name: str) -> str:
    """The normalised relative path of a member name, or an error if it could escape.

    Backslashes count as separators here: no dataset uses them in names, and on Windows
    they would be.
    """
    if not name or "\x00" in name:
        why = "has an empty name or a NUL byte"
    elif name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        why = "is an absolute path"
    elif ".." in re.split(r"[/\\]", name):
        why = "has a '..' component"
    else:
        return posixpath.normpath(name)
    raise _refuse(archive, name, why)


def _walk(start: str, link: str, symlinks: set[str]) -> str | None:
    """Resolve ``link`` from folder ``start`` by name; ``None`` if it leaves the root.

    Raises ValueError if a folder on the way is itself a symlink of the archive, whose own
    target this name-only walk cannot follow.
    """
    parts = [] if start in ("", ".") else start.split("/")
    steps = [p for p in re.split(r"[/\\]", link) if p not in ("", ".")]
    for i, step in enumerate(steps):
        if step == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(step)
        if i < len(steps) - 1 and "/".join(parts) in symlinks:
            raise ValueError("/".join(parts))
    return "/".join(parts)


def _check_link(archive: Path, member: tarfile.TarInfo, path: str, symlinks: set[str]) -> None:
    link = member.linkname
    kind = "symlink" if member.issym() else "hard link"
    if not link or link.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", link):
        raise _refuse(archive, member.name, f"is a {kind} to the absolute path {link!r}")
    start = posixpath.dirname(path) if member.issym() else ""
    try:
        resolved = _walk(start, link, symlinks)
    except ValueError as exc:
        why = f"is a {kind} to {link!r}, which passes through the archive's symlink {exc}"
        raise _refuse(archive, member.name, why) from None
    if resolved is None:
        raise _refuse(archive, member.name, f"is a {kind} to {link!r}, outside the target")


def _check_tar(archive: Path, members: list[tarfile.TarInfo]) -> int:
    """Check every tar member; return the bytes the regular files need."""
    paths = [_member_path(archive, m.name) for m in members]
    symlinks = {p for m, p in zip(members, paths, strict=True) if m.issym()}
    needed = 0
    for member, path in zip(members, paths, strict=True):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in symlinks:
                why = f"would be written through the archive's symlink {'/'.join(parts[:depth])!r}"
                raise _refuse(archive, member.name, why)
        if path in symlinks and not member.issym():
            raise _refuse(archive, member.name, "has the same name as a symlink of the archive")
        if member.type in _SPECIAL_TAR_TYPES:
            raise _refuse(archive, member.name, f"is {_SPECIAL_TAR_TYPES[member.type]}")
        if member.issym() or member.islnk():
            _check_link(archive, member, path, symlinks)
        elif member.isreg():
            needed += member.size
        elif not member.isdir():
            raise _refuse(archive, member.name, f"has the unsupported type {member.type!r}")
    return needed


def _check_zip(archive: Path, infos: list[zipfile.ZipInfo]) -> tuple[list[str], int]:
    """Check every zip entry; return their relative paths and the bytes they need."""
    paths, needed = [], 0
    for info in infos:
        path = _member_path(archive, info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise _refuse(archive, info.filename, "is a symlink (zip symlinks are never extracted)")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refuse(archive, info.filename, "is a device file, FIFO or socket")
        if info.flag_bits & 0x1:
            msg = (
                f"{archive}: member {info.filename!r} is encrypted; password-protected "
                "archives are not supported. Extract it by hand into the dataset folder."
            )
            raise IadError(msg)
        paths.append(path)
        needed += info.file_size
    return paths, needed


RATIO_FLOOR = 64 * 1024 * 1024
"""Below this many uncompressed bytes the ratio is not checked (small text files compress
well and cannot hurt)."""


def _check_expansion(archive: Path, needed: int) -> None:
    """Refuse an archive whose members add up to too much, absolutely or for its size."""
    cap, ratio = limits.max_extract_bytes(), limits.max_extract_ratio()
    size = max(1, archive.stat().st_size)
    mib = 1024 * 1024
    if needed > cap:
        found = f"expands to {needed / mib:.1f} MiB, above the cap of {cap / mib:.1f} MiB"
        setting = "IAD_MAX_EXTRACT_BYTES"
    elif needed > RATIO_FLOOR and needed / size > ratio:
        found = (
            f"expands {needed / size:.0f}-fold ({size / mib:.2f} MiB to {needed / mib:.1f} "
            f"MiB), above the cap of {ratio:g}"
        )
        setting = "IAD_MAX_EXTRACT_RATIO"
    else:
        return
    msg = (
        f"Refusing to extract {archive}: it {found}; nothing was written. A dataset archive "
        f"of images barely compresses; this looks like a decompression bomb. If the archive "
        f"is legitimate, raise {setting}."
    )
    raise UnsafeArchiveError(msg)


def _extract_zip(archive: Path, tmp: Path, progress: bool) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        paths, needed = _check_zip(archive, infos)
        _check_expansion(archive, needed)
        require_free_space(tmp.parent, needed, f"extract {archive}", "extract elsewhere")
        tmp.mkdir()
        bar = tqdm(infos, unit="file", desc=archive.name, disable=None if progress else True)
        for info, path in zip(bar, paths, strict=True):
            out = tmp / path
            if info.is_dir() or stat.S_ISDIR(info.external_attr >> 16):
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return len(infos)


def _extract_tar(archive: Path, tmp: Path, progress: bool) -> int:
    with tarfile.open(archive, "r:*") as tf:
        tf.errorlevel = 1  # filter and OS errors raise instead of being logged and skipped
        members = tf.getmembers()
        needed = _check_tar(archive, members)
        _check_expansion(archive, needed)
        require_free_space(tmp.parent, needed, f"extract {archive}", "extract elsewhere")
        tmp.mkdir()
        bar = tqdm(members, unit="file", desc=archive.name, disable=None if progress else True)
        tf.extractall(tmp, members=bar, filter="data")
        return len(members)


def check_links_within(root: Path, archive: Path) -> None:
    """Refuse if a symlink under ``root`` resolves outside ``root``.

    :func:`safe_extract` checks links against the folder it extracts into; when only a
    wrapper folder inside it becomes the dataset, a link such as ``wrapper/up -> ..`` that
    stayed inside the extraction folder points outside the dataset. This walks the final
    folder (links are not followed) and resolves each link where it will live.

    Raises:
        UnsafeArchiveError: naming ``archive`` and the link, relative to ``root``.
    """
    root = Path(root)
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                continue
            resolved = os.path.realpath(path)
            if os.path.commonpath([real_root, resolved]) != real_root:
                rel = os.path.relpath(path, root)
                why = f"is a symlink to {os.readlink(path)!r}, outside the dataset folder"
                msg = str(_refuse(archive, rel, why)).replace(
                    "Nothing was extracted.", "Nothing was installed."
                )
                raise UnsafeArchiveError(msg)


def safe_extract(archive: Path, target: Path, *, progress: bool = True) -> Path:
    """Extract a zip or tar archive into the new folder ``target``, checking every member.

    Args:
        archive: A zip or tar file (compression detected from the content).
        target: Folder to create; it must not exist. Its parent is created if needed.
        progress: Show a tqdm bar over members (only when stderr is a terminal).

    Returns:
        ``target``.

    Raises:
        IadError: ``target`` exists, the file is not an archive, or it is corrupt.
        UnsafeArchiveError: A member could escape ``target`` or is a special file, or the
            archive expands beyond the caps of :mod:`iad_pipeline.limits`.
        InsufficientDiskSpaceError: The uncompressed size (+64 MiB) exceeds the free space.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with zipfile.ZipFile(d / "a.zip", "w") as zf:
    ...     zf.writestr("bottle/good/000.png", b"png")
    >>> out = safe_extract(d / "a.zip", d / "mvtec", progress=False)
    >>> (out / "bottle/good/000.png").read_bytes(), sorted(p.name for p in d.iterdir())
    (b'png', ['a.zip', 'mvtec'])
    """
    archive, target = Path(archive), Path(target)
    if target.exists() or target.is_symlink():
        msg = (
            f"Cannot extract {archive} into {target}: it already exists, and extraction never "
            "overwrites. Move it away (or delete it if it is a broken extraction) and run again."
        )
        raise IadError(msg)
    kind = archive_kind(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = fsutil.temp_sibling(target, ".extracting")
    extract = _extract_zip if kind == "zip" else _extract_tar
    try:
        count = extract(archive, tmp, progress)
        if target.exists():
            msg = f"{target} appeared while {archive} was being extracted; move it away."
            raise IadError(msg)
        os.replace(tmp, target)
    except tarfile.FilterError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _refuse(archive, exc.tarinfo.name, f"was refused by the tar filter: {exc}") from exc
    except _CORRUPT as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        msg = (
            f"{archive} is corrupt or truncated ({type(exc).__name__}: {exc}); expected a "
            "complete archive. Delete it and download it again."
        )
        raise IadError(msg) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Extracted %d members of %s into %s", count, archive, target)
    return target
