"""Packing a dataset folder into its real archive format, byte-for-byte reproducibly.

The archive's top-level members are the contents of the folder (no wrapper folder), as in
MVTec's tar.xz files. Members are sorted, every timestamp is 2020-01-01 00:00:00, owners are
uid/gid 0 without names, and modes are 0644 (files) and 0755 (folders), so the same tree
always gives the same sha256 and download/verify/extract code can be tested offline.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tarfile
import zipfile
from pathlib import Path

from iad_pipeline.datasets.catalog import ARCHIVE_NAMES
from iad_pipeline.errors import IadError, UnknownDatasetError
from iad_pipeline.fsutil import atomic_path

EPOCH = 1577836800  # 2020-01-01T00:00:00Z
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
XZ_PRESET = 1  # speed over size: the images inside are already compressed
FORMATS = (".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar", ".zip")


def members(root: Path) -> list[tuple[str, Path]]:
    """Every folder and file under ``root`` as (posix name relative to root, path), sorted.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / "b").mkdir(); _ = (d / "b" / "x.png").write_bytes(b"")
    >>> _ = (d / "a.txt").write_text("hi")
    >>> [name for name, _ in members(d)]
    ['a.txt', 'b', 'b/x.png']
    """
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in (*dirnames, *filenames):
            path = base / name
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                msg = (
                    f"{path}: not a regular file or folder; archives of synthetic datasets "
                    "hold only files and folders, so remove it and pack again"
                )
                raise IadError(msg)
            found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def archive_format(dest: Path) -> str:
    """The format implied by an archive's file name.

    >>> archive_format(Path("mvtec_anomaly_detection.tar.xz")), archive_format(Path("MPDD.zip"))
    ('tar.xz', 'zip')
    """
    name = dest.name.lower()
    for suffix in FORMATS:
        if name.endswith(suffix):
            return {".txz": "tar.xz", ".tgz": "tar.gz"}.get(suffix, suffix[1:])
    msg = f"{dest}: cannot tell the archive format from the name; expected one of {FORMATS}"
    raise IadError(msg)


def _tar_info(name: str, path: Path) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = path.stat().st_size, 0o644
    return info


def _write_tar(tmp: Path, entries: list[tuple[str, Path]], fmt: str) -> None:
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(open(tmp, "wb"))
        options: dict = {"mode": "w", "format": tarfile.PAX_FORMAT}
        if fmt == "tar.gz":
            # tarfile's own gzip writer stamps the current time into the gzip header.
            raw = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0))
        elif fmt == "tar.xz":
            options = {**options, "mode": "w:xz", "preset": XZ_PRESET}
        tar = stack.enter_context(tarfile.open(fileobj=raw, **options))
        for name, path in entries:
            info = _tar_info(name, path)
            if info.isdir():
                tar.addfile(info)
            else:
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)


def _write_zip(tmp: Path, entries: list[tuple[str, Path]]) -> None:
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, path in entries:
            is_dir = path.is_dir()
            info = zipfile.ZipInfo(name + "/" if is_dir else name, date_time=ZIP_DATE)
            info.create_system = 3  # unix, so the modes below are honoured
            if is_dir:
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
            else:
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_archive(key: str, root: Path | str, dest: Path | str | None = None) -> tuple[Path, str]:
    """Pack the contents of ``root`` into ``dest`` (default ``root.parent / ARCHIVE_NAMES[key]``).

    The format follows the file name (``.tar.xz``, ``.tar``, ``.zip``, also ``.tar.gz``); the
    file is written under a temporary name and renamed, replacing an older one.

    Returns:
        The archive path and its sha256 (hex).

    Raises:
        UnknownDatasetError: ``key`` has no archive name.
        IadError: ``root`` is not a folder, ``dest`` lies inside it, or the name has no
            known archive suffix.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()) / "mpdd"; root.mkdir()
        >>> _ = (root / "readme.txt").write_text("hi")
        >>> path, digest = pack_archive("mpdd", root)
        >>> path.name, digest == pack_archive("mpdd", root)[1]
        ('MPDD.zip', True)
    """
    if key not in ARCHIVE_NAMES:
        msg = f"unknown dataset key {key!r}; valid keys: {', '.join(ARCHIVE_NAMES)}"
        raise UnknownDatasetError(msg)
    root = Path(root)
    if not root.is_dir():
        msg = f"{root}: not a folder; pack_archive needs the dataset folder written by synthesize"
        raise IadError(msg)
    dest = Path(dest) if dest is not None else root.parent / ARCHIVE_NAMES[key]
    if dest.resolve().is_relative_to(root.resolve()):
        msg = f"{dest}: lies inside {root}, so the archive would contain itself; write it outside"
        raise IadError(msg)
    fmt = archive_format(dest)
    entries = members(root)
    with atomic_path(dest) as tmp:
        if fmt == "zip":
            _write_zip(tmp, entries)
        else:
            _write_tar(tmp, entries, fmt)
    return dest, sha256_file(dest)
