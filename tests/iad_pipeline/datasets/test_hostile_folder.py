"""Hostile files in a ``--from`` folder: no hang, no memory blow-up, one quarantine row each.

A user's folder holds a ``*.png`` link to ``/dev/zero``, a FIFO named like an image and one
named like a mask, a link to an image outside the folder, a PNG header declaring a width of
``0xFFFFFFFF`` and a real 25000x25000 PNG (80 KB on disk, 625 megapixels). Every stage that
reads the folder (samples, annotate, questions) runs as the ``iad`` command in a child
process with a time limit and an address-space limit: the guard turns a hang or a runaway
read into a test failure instead of a stuck or swapping test run.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import polars as pl
import pytest

from iad_pipeline.datasets.imageinfo import ImageFault, inspect

GUARD_SECONDS = 120
GUARD_BYTES = 3 * 1024**3


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG of 1-bit grayscale ``width`` x ``height`` (IHDR, IDAT, IEND)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat or zlib.compress(b"\0"))
        + png_chunk(b"IEND", b"")
    )


def bomb_png(side: int) -> bytes:
    """A real, decodable ``side`` x ``side`` black PNG, compressed row by row."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed 1-bit pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return png(side, side, idat)


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (GUARD_BYTES, GUARD_BYTES))


def iad(*argv: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "IAD_HOME": str(home), "IAD_PROFILE": "real", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "iad_pipeline.cli", *argv],
        capture_output=True,
        text=True,
        timeout=GUARD_SECONDS,
        env=env,
        preexec_fn=limited,
    )


@pytest.fixture(scope="module")
def hostile(synth, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of a synthetic MVTec AD folder with one hostile file per attack."""
    base = tmp_path_factory.mktemp("hostile")
    _, root = synth.copy("mvtec_ad", base / "mvtec")
    good = root / "bottle" / "train" / "good"
    outside = base / "elsewhere.png"
    outside.write_bytes((good / "000.png").read_bytes())
    (good / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(good / "pipe.png")
    (good / "outside.png").symlink_to(outside)
    (good / "wide.png").write_bytes(png(0xFFFFFFFF, 1))
    (good / "long.png").write_bytes(png(0x7FFFFFFF, 1))
    (good / "bomb.png").write_bytes(bomb_png(25_000))
    defect = next(p for p in (root / "bottle" / "test").iterdir() if p.name != "good")
    image = sorted(defect.iterdir())[0]
    mask = next((root / "bottle" / "ground_truth" / defect.name).glob(f"{image.stem}*"))
    mask.unlink()
    os.mkfifo(mask)
    expected = {
        str(good / "zero.png"): "not_a_regular_file",
        str(good / "pipe.png"): "not_a_regular_file",
        str(good / "outside.png"): "link_outside_dataset",
        str(good / "wide.png"): "unreadable_image",  # PNG allows at most 2**31 - 1
        str(good / "long.png"): "image_too_large",
        str(good / "bomb.png"): "image_too_large",
        str(mask): "unreadable_mask",
    }
    return root, expected


def test_every_stage_quarantines_hostile_files_without_hanging(hostile, tmp_path) -> None:
    root, expected = hostile
    home = tmp_path / "home"
    data = home / "data"
    fetched = iad(
        "datasets", "fetch", "mvtec_ad", "--from", str(root), "--accept-license", home=home
    )
    assert fetched.returncode == 0, fetched.stderr

    samples = iad("samples", "mvtec_ad", "-q", home=home)  # the table the next stages read
    assert samples.returncode == 0, samples.stderr
    quarantine = pl.read_parquet(home / "tables" / "quarantine" / "samples" / "mvtec_ad.parquet")
    # paths are as read through <data-dir>/mvtec_ad, the link to the user's folder, and stored
    # relative to the profile's root (home, on the real profile)
    found = {
        str(root / (home / p).relative_to(data / "mvtec_ad")): r
        for p, r in zip(quarantine["path"], quarantine["reason"], strict=True)
    }
    assert {p: found.get(p) for p in expected} == expected
    admitted = pl.read_parquet(home / "tables" / "samples" / "mvtec_ad.parquet")["image_path"]
    hostile_names = {"zero.png", "pipe.png", "outside.png", "wide.png", "long.png", "bomb.png"}
    assert not any(Path(p).name in hostile_names for p in admitted)

    annotate = iad("annotate", "mvtec_ad", "-q", home=home)
    assert annotate.returncode == 0, annotate.stderr
    questions = iad(
        "questions", "mvtec_ad", "--styles", "emit", "--out", str(tmp_path / "q.parquet"), "-q",
        home=home,
    )  # fmt: skip
    assert questions.returncode == 0, questions.stderr
    assert pl.read_parquet(tmp_path / "q.parquet").height > 0


@pytest.mark.parametrize(
    ("limit", "reason"), [(None, "too_large"), (25_000 * 25_000, None)], ids=["default", "raised"]
)
def test_the_pixel_limit_is_configurable(tmp_path, monkeypatch, limit, reason) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png(25_000, 25_000))  # the header is all the limit looks at
    kwargs = {} if limit is None else {"max_pixels": limit}
    try:
        info = inspect(path, **kwargs)
        got = None
    except ImageFault as fault:
        got, info = fault.kind, None
    assert got == reason
    if reason is None:
        assert (info.width, info.height) == (25_000, 25_000)
