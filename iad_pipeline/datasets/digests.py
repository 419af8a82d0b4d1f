"""Digests a dataset publishes: sha256 or md5 (anomalib publishes an md5 for MVTec 3D-AD).

A resource may carry either; the download itself always computes a sha256 (recorded in the
marker), and an md5, when that is what was published, is checked on the finished file, on a
cache hit too. The marker records which digest verified the file (``verified_with``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from iad_pipeline.errors import ChecksumMismatchError, IadError

HEX = "0123456789abcdef"
LENGTHS = {"sha256": 64, "md5": 32}


def check_hex(value: str, kind: str = "sha256") -> str:
    """A digest as lower-case hex of the right length, or a one-line error.

    >>> check_hex("D8BB2800FBF3AC88E798DA6AE10DC819", "md5")
    'd8bb2800fbf3ac88e798da6ae10dc819'
    """
    value = value.strip().lower()
    if len(value) != LENGTHS[kind] or any(c not in HEX for c in value):
        msg = f"{kind} must be {LENGTHS[kind]} hex digits, got {value!r}"
        raise IadError(msg)
    return value


def md5_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks (used only to compare with a published md5)."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: Path, expected: str, *, what: str, keep_aside: bool = True) -> str:
    """Check ``path`` against a published md5; a mismatch moves the bytes aside (``.corrupt``)."""
    digest = md5_file(path)
    if digest != expected:
        where = path
        if keep_aside:
            where = path.with_name(path.name + ".corrupt")
            os.replace(path, where)
        msg = (
            f"{path}: md5 is {digest}, expected {expected} for {what}; the file is incomplete "
            f"or a different release (bytes kept as {where.name}; pass --md5 if it is legitimate)"
        )
        raise ChecksumMismatchError(msg)
    return digest
