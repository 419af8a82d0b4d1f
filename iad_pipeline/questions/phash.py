"""A perceptual (DCT) hash, so that resized or re-encoded copies of an image can be found.

The hash follows the usual pHash recipe with OpenCV only: the image is read as grayscale,
shrunk to 32x32 with ``cv2.INTER_AREA`` (an average over each source block, which makes the
result nearly independent of the source size), transformed with ``cv2.dct``, and the top-left
8x8 block of low frequencies is kept. The DC coefficient (the mean brightness) is dropped; each
of the 63 remaining coefficients gives one bit, set when it is above their median. Bit ``i`` of
the returned ``int`` is coefficient ``i + 1`` of the block in row-major order, so the hash fits
in 63 bits of a ``uint64``.

Two hashes are compared by their Hamming distance (bits that differ): a copy resized from 128
to 96 pixels lands within 0-2 bits of its original as a rule, up to 10 for textures saved as
JPEG, while unrelated images differ in about half the bits. Images of one industrial category
can be as close as copies; :mod:`iad_pipeline.questions.leakage` gives the distribution we
measured and how it tells them apart.

>>> import numpy as np
>>> ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
>>> h = phash_array(ramp)
>>> h == phash_array(cv2.resize(ramp, (48, 48), interpolation=cv2.INTER_AREA))
True
>>> hamming(h, h ^ 0b1011)
3
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from iad_pipeline.errors import IadError

SIZE = 32
BLOCK = 8
BITS = BLOCK * BLOCK - 1
T = TypeVar("T")
# Paths per process-pool task, and the fewest paths worth starting worker processes for.
CHUNK = 256
PARALLEL_MIN = 2 * CHUNK
_SHIFTS = np.arange(BITS, dtype=np.uint64)


class UnreadableImageError(IadError):
    """An image file that OpenCV cannot decode (missing, truncated or not an image)."""


def read_image(path: Path | str, *, gray: bool = True) -> np.ndarray:
    """Decode ``path`` as 8-bit grayscale (or BGR with ``gray=False``); clear error if not.

    >>> read_image("/nonexistent/x.png")
    Traceback (most recent call last):
    ...
    iad_pipeline.questions.phash.UnreadableImageError: /nonexistent/x.png: ...
    """
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    found = Path(path).is_file()
    image = cv2.imread(str(path), flag) if found else None
    if image is None:
        exists = "exists but OpenCV cannot decode it" if found else "not found"
        msg = (
            f"{path}: {exists}; expected a readable image file. Re-extract the dataset or "
            "leave the file out of the samples table"
        )
        raise UnreadableImageError(msg)
    return image


def phash_array(gray: np.ndarray) -> int:
    """The 63-bit DCT hash of a grayscale image array (any size, any numeric type).

    >>> phash_array(np.zeros((10, 10), np.uint8))
    0
    """
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:BLOCK, :BLOCK].ravel()[1:]
    bits = low > np.median(low)
    return int(np.bitwise_or.reduce(bits.astype(np.uint64) << _SHIFTS))


def phash_file(path: Path | str) -> int:
    """The DCT hash of an image file (read as grayscale)."""
    return phash_array(read_image(path))


def _apply_chunk(fn: Callable[[str], T], paths: list[str]) -> list[T]:
    return [fn(p) for p in paths]


def map_files(
    fn: Callable[[str], T], paths: Sequence[Path | str], workers: int | None = None
) -> list[T]:
    """``[fn(p) for p in paths]``, in a process pool for long lists, in this process otherwise.

    Decoding dominates and holds the GIL in part, so long lists go in chunks of ``CHUNK``
    paths to a ``forkserver`` process pool (the samples table does the same); lists shorter
    than ``PARALLEL_MIN`` or ``workers=1`` stay in this process. ``fn`` must be a module-level
    function (picklable).

    >>> map_files(len, ["a", "bc"])
    [1, 2]
    """
    items = [str(p) for p in paths]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(items) < PARALLEL_MIN:
        return _apply_chunk(fn, items)
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    context = multiprocessing.get_context("forkserver")
    task = functools.partial(_apply_chunk, fn)
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return [out for outs in pool.map(task, chunks) for out in outs]


def phash_files(paths: Sequence[Path | str], workers: int | None = None) -> list[int]:
    """Hashes of many files, in order (see :func:`map_files` for ``workers``).

    >>> phash_files([])
    []
    """
    return map_files(phash_file, paths, workers)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two hashes.

    >>> hamming(0b1100, 0b1010)
    2
    """
    return (a ^ b).bit_count()


def as_array(hashes: Sequence[int]) -> np.ndarray:
    """Hashes as a ``uint64`` array, the input of :func:`distances`."""
    return np.asarray(list(hashes), dtype=np.uint64)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix of Hamming distances between ``uint64`` hash arrays, shape ``(len(a), len(b))``.

    XOR then popcount (``np.bitwise_count``), all in numpy; callers chunk ``a`` to bound
    memory (8 bytes per pair while it runs).

    >>> distances(as_array([0, 7]), as_array([1, 7, 8])).tolist()
    [[1, 3, 1], [2, 0, 4]]
    """
    return np.bitwise_count(a[:, None] ^ b[None, :])
