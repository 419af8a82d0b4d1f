"""The leakage guard: no training image may appear in any evaluation set.

Evaluation sets are MMAD (its query images and every similar/random template of
``mmad.json``) and the cross-dataset test splits. A training image leaks when an evaluation
image is

- an **exact** copy: the same sha256 of the file's bytes (a join on ``sha256``), or
- a **perceptual** copy: resized and/or re-encoded (MMAD's DS-MVTec images are resized
  copies of MVTec AD test images). Found in two stages:

  1. candidates: the 63-bit DCT hashes (:mod:`iad_pipeline.questions.phash`) differ in at most
     ``max_distance`` bits, compared for every (train, eval) pair at once with numpy XOR and
     popcount over ``uint64`` arrays, in chunks of train rows;
  2. verification: both images are shrunk to the same size (the smaller of the two, at most
     ``VERIFY_SIZE`` pixels on the long side, ``cv2.INTER_AREA``), blurred with a Gaussian of
     sigma ``VERIFY_SIGMA`` pixels to wash out resampling and JPEG noise, and compared by the
     root mean square of their grey-level difference, which must be at most ``max_rmse``.

Why two stages: images of one industrial category are photographs of the same object under
the same camera, so their low frequencies, and with them their DCT hashes, are nearly equal.
On our synthetic datasets (all nine layouts, per_class=3, 128 px, seed 0: 13,746 pairs of
*different* images of one category) the Hamming distances run from 0 to 56: 8 pairs at 0,
28 at 2, 87 at 4, 171 at 6, 282 at 8, 387 at 10, median about 24 (always even: the median
threshold sets 31 of the 63 bits). A hash threshold alone would flag hundreds of them. The
pixel check separates them: with ``VERIFY_SIZE`` 256 and ``max_rmse`` 2.0, none of those
pairs is flagged (at 128 and at 256 px; the closest pair, two near-identical synthetic tiles,
has an RMSE of 2.02, so the margin is thin on synthetic textures), while copies resized to
50-80% with INTER_AREA, Lanczos or bicubic are caught in 99.5% of cases as PNG, 99% as JPEG
quality 90 and 93-95% as JPEG quality 75. Most misses are textures (DTD, DAGM, carpet),
whose hash bits are unstable: a JPEG copy can move 10 bits (quality 90) or 20 (quality 75),
which is why ``max_distance`` defaults to 10, not the textbook 6. Raise it to catch harsher
re-encodings, at the price of more pairs to verify; raise ``max_rmse`` to 2.5 to catch every
lossless copy, at the price of a few flagged look-alikes (2-3 of the 13,746 pairs).

>>> import polars as pl
>>> train = pl.DataFrame({"sample_id": ["a/x"], "image_path": ["/d/x.png"], "sha256": ["ab"]})
>>> evals = pl.DataFrame({"image_path": ["/m/q.png"], "sha256": ["ab"]})
>>> find_leaks(train, evals, max_distance=None).select("sample_id", "kind", "distance").rows()
[('a/x', 'exact', 0)]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from iad_pipeline.datasets.download import sha256_file
from iad_pipeline.datasets.mmad import load_mmad_json
from iad_pipeline.errors import IadError, LayoutError
from iad_pipeline.questions.phash import as_array, distances, map_files, phash_files, read_image

log = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE = 10
DEFAULT_MAX_RMSE = 2.0
VERIFY_SIZE = 256
VERIFY_SIGMA = 0.8
# (train x eval) hash pairs compared per numpy call: 4M pairs = 32 MB of uint64 at a time.
PAIRS_PER_CHUNK = 1 << 22
# Leaks listed in a LeakageError's message; the rest are counted.
SHOWN = 20

LEAKS_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "train_image_path": pl.String(),
    "eval_image_path": pl.String(),
    "kind": pl.String(),
    "distance": pl.Int64(),
    "rmse": pl.Float64(),
    "n_matches": pl.Int64(),
}

EVAL_IMAGES_SCHEMA: dict[str, pl.DataType] = {
    "image_path": pl.String(),
    "relpath": pl.String(),
    "role": pl.String(),
    "sha256": pl.String(),
}


class LeakageError(IadError):
    """Training images that also appear (exactly or as resized copies) in an evaluation set."""


def mmad_eval_images(
    mmad_root: Path | str, *, skip_missing: bool = False, workers: int | None = None
) -> pl.DataFrame:
    """Every image MMAD shows a model: query keys and all similar/random template paths.

    Columns: ``image_path`` (absolute), ``relpath`` (as written in mmad.json), ``role``
    (``query`` or ``template``; a path listed as both counts as a query) and ``sha256``.
    One row per distinct path, sorted by ``relpath``.

    Raises:
        LayoutError: mmad.json is missing or malformed, or a listed image is not on disk
            (unless ``skip_missing``, which drops it with a warning).
    """
    root = Path(mmad_root)
    roles: dict[str, str] = {}
    for key, entry in load_mmad_json(root / "mmad.json").items():
        roles[key] = "query"
        if not isinstance(entry, dict):
            continue
        for field in ("similar_templates", "random_templates"):
            for rel in entry.get(field) or []:
                roles.setdefault(rel, "template")
    rels = sorted(roles)
    missing = [r for r in rels if not (root / r).is_file()]
    if missing and not skip_missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        msg = (
            f"{root / 'mmad.json'}: {len(missing)} listed images are not on disk ({shown}); "
            "expected the complete ALL_DATA tree. Fetch MMAD again, or pass skip_missing=True "
            "to check only the images present"
        )
        raise LayoutError(msg)
    if missing:
        log.warning("%s: %d images of mmad.json are missing; not checked", root, len(missing))
    absent = set(missing)
    present = [r for r in rels if r not in absent]
    paths = [str(root / r) for r in present]
    hashes = _sha256_all(paths, workers)
    rows = {"image_path": paths, "relpath": present, "role": [roles[r] for r in present]}
    return pl.DataFrame({**rows, "sha256": hashes}, schema=EVAL_IMAGES_SCHEMA)


def find_leaks(
    train: pl.DataFrame,
    eval_images: pl.DataFrame,
    *,
    max_distance: int | None = DEFAULT_MAX_DISTANCE,
    max_rmse: float | None = DEFAULT_MAX_RMSE,
    workers: int | None = None,
) -> pl.DataFrame:
    """One row per training sample that also appears in ``eval_images``.

    Args:
        train: Needs ``image_path``; ``sample_id`` (else the path names the sample) and
            ``sha256`` (computed from the file where missing or null). An optional ``phash``
            column of precomputed hashes is reused.
        eval_images: Needs ``image_path``; ``sha256`` and ``phash`` as for ``train``.
        max_distance: Largest Hamming distance between DCT hashes for a perceptual
            candidate; ``None`` checks exact copies only.
        max_rmse: Largest grey-level RMSE (after shrinking and blurring) for a candidate to
            count as a copy; ``None`` trusts the hash alone.
        workers: Processes for hashing (see :func:`iad_pipeline.questions.phash.map_files`).

    Returns:
        Columns of :data:`LEAKS_SCHEMA`: ``sample_id``, ``train_image_path``, the best match
        ``eval_image_path`` (exact before perceptual, then smallest distance and RMSE), its
        ``kind`` (``exact`` or ``perceptual``), ``distance`` (0 for exact), ``rmse`` (null for
        exact or unverified) and ``n_matches`` (evaluation images matched). Sorted by id.
    """
    train = _prepare(train, "train", workers)
    evals = _prepare(eval_images, "eval_images", workers)
    exact = (
        train.select("sample_id", "image_path", "sha256")
        .join(evals.select(pl.col("image_path").alias("eval_image_path"), "sha256"), on="sha256")
        .select(
            "sample_id",
            pl.col("image_path").alias("train_image_path"),
            "eval_image_path",
            pl.lit("exact").alias("kind"),
            pl.lit(0, pl.Int64).alias("distance"),
            pl.lit(None, pl.Float64).alias("rmse"),
        )
    )
    frames = [exact]
    if max_distance is not None and train.height and evals.height:
        frames.append(_perceptual(train, evals, max_distance, max_rmse, workers))
    pairs = pl.concat(frames, how="vertical_relaxed").with_columns(
        pl.len().over("sample_id").cast(pl.Int64).alias("n_matches")
    )
    best = (
        pairs.sort(["sample_id", "kind", "distance", "rmse", "eval_image_path"], nulls_last=False)
        .group_by("sample_id", maintain_order=True)
        .first()
    )
    return best.select(list(LEAKS_SCHEMA)).cast(LEAKS_SCHEMA).sort("sample_id")


def assert_no_leaks(
    train: pl.DataFrame,
    eval_images: pl.DataFrame,
    *,
    allow: bool = False,
    what: str = "training set",
    **kwargs: object,
) -> pl.DataFrame:
    """:func:`find_leaks`, raising :class:`LeakageError` if any, unless ``allow=True``.

    ``allow=True`` is the explicit override (e.g. to reproduce AnomalyR1's MMAD-derived split):
    the leaks are logged as a warning and returned. ``kwargs`` go to :func:`find_leaks`.

    >>> import polars as pl
    >>> t = pl.DataFrame({"sample_id": ["a/x"], "image_path": ["/d/x.png"], "sha256": ["ab"]})
    >>> e = pl.DataFrame({"image_path": ["/m/q.png"], "sha256": ["ab"]})
    >>> assert_no_leaks(t, e, max_distance=None)
    Traceback (most recent call last):
    ...
    iad_pipeline.questions.leakage.LeakageError: training set: 1 training images appear ...
    >>> assert_no_leaks(t, e, max_distance=None, allow=True).height
    1
    """
    leaks = find_leaks(train, eval_images, **kwargs)  # type: ignore[arg-type]
    if leaks.height == 0:
        return leaks
    lines = [
        f"  {r['sample_id']} ({r['kind']}, distance {r['distance']}) = {r['eval_image_path']}"
        for r in leaks.head(SHOWN).iter_rows(named=True)
    ]
    more = [f"  ... and {leaks.height - SHOWN} more"] if leaks.height > SHOWN else []
    summary = f"{what}: {leaks.height} training images appear in the evaluation images"
    if allow:
        log.warning("%s (allowed by allow=True):\n%s", summary, "\n".join(lines + more))
        return leaks
    msg = (
        f"{summary}; expected none. Remove them from the training set (or choose a recipe "
        "whose sources are disjoint from the evaluation sets), or pass allow=True to accept "
        "the leak knowingly:\n" + "\n".join(lines + more)
    )
    raise LeakageError(msg)


def _prepare(frame: pl.DataFrame, name: str, workers: int | None) -> pl.DataFrame:
    """``sample_id, image_path, sha256 [, phash]`` with every sha256 filled in."""
    if "image_path" not in frame.columns:
        msg = f"{name}: no image_path column (found {frame.columns}); expected a samples table"
        raise IadError(msg)
    out = frame.with_columns(
        (pl.col("sample_id") if "sample_id" in frame.columns else pl.col("image_path")).alias(
            "sample_id"
        ),
        (pl.col("sha256") if "sha256" in frame.columns else pl.lit(None, pl.String)).alias(
            "sha256"
        ),
    )
    todo = out.filter(pl.col("sha256").is_null())["image_path"].to_list()
    if todo:
        filled = dict(zip(todo, _sha256_all(todo, workers), strict=True))
        out = out.with_columns(
            pl.coalesce("sha256", pl.col("image_path").replace_strict(filled, default=None))
        )
    keep = ["sample_id", "image_path", "sha256"] + (["phash"] if "phash" in out.columns else [])
    return out.select(keep)


def _sha256_all(paths: Sequence[str], workers: int | None) -> list[str]:
    for path in paths:
        if not Path(path).is_file():
            msg = f"{path}: not found; expected every listed image on disk to hash it"
            raise LayoutError(msg)
    # hashlib releases the GIL on large buffers, so threads suffice.
    with ThreadPoolExecutor(workers or 4) as pool:
        return list(pool.map(sha256_file, paths))


def _hashes(frame: pl.DataFrame, workers: int | None) -> np.ndarray:
    if "phash" in frame.columns and frame["phash"].null_count() == 0:
        return as_array(frame["phash"].to_list())
    return as_array(phash_files(frame["image_path"].to_list(), workers))


def _perceptual(
    train: pl.DataFrame,
    evals: pl.DataFrame,
    max_distance: int,
    max_rmse: float | None,
    workers: int | None,
) -> pl.DataFrame:
    """Candidate pairs by hash distance, verified by pixels; pairs with equal sha256 skipped."""
    a, b = _hashes(train, workers), _hashes(evals, workers)
    step = max(1, PAIRS_PER_CHUNK // len(b))
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(a), step):
        dist = distances(a[start : start + step], b)
        rows, cols = np.nonzero(dist <= max_distance)
        found.append((rows + start, cols, dist[rows, cols]))
    ti = np.concatenate([f[0] for f in found])
    ei = np.concatenate([f[1] for f in found])
    dd = np.concatenate([f[2] for f in found]).astype(np.int64)
    tsha, esha = train["sha256"].to_numpy(), evals["sha256"].to_numpy()
    keep = tsha[ti] != esha[ei]
    ti, ei, dd = ti[keep], ei[keep], dd[keep]
    tpath, epath = train["image_path"].to_numpy(), evals["image_path"].to_numpy()
    rmse = np.full(len(ti), np.nan)
    if max_rmse is not None and len(ti):
        needed = sorted(set(tpath[ti].tolist()) | set(epath[ei].tolist()))
        thumbs = dict(zip(needed, map_files(thumbnail, needed, workers), strict=True))
        pairs = zip(tpath[ti], epath[ei], strict=True)
        rmse = np.array([blurred_rmse(thumbs[t], thumbs[e]) for t, e in pairs], dtype=np.float64)
        keep = rmse <= max_rmse
        ti, ei, dd, rmse = ti[keep], ei[keep], dd[keep], rmse[keep]
    return pl.DataFrame(
        {
            "sample_id": train["sample_id"].to_numpy()[ti],
            "train_image_path": tpath[ti],
            "eval_image_path": epath[ei],
            "kind": ["perceptual"] * len(ti),
            "distance": dd,
            "rmse": rmse,
        },
        schema={k: v for k, v in LEAKS_SCHEMA.items() if k != "n_matches"},
    ).with_columns(pl.col("rmse").fill_nan(None))


def thumbnail(path: str) -> np.ndarray:
    """Grayscale ``uint8`` copy of an image, at most ``VERIFY_SIZE`` pixels on its long side."""
    gray = read_image(path)
    h, w = gray.shape
    scale = VERIFY_SIZE / max(h, w)
    if scale >= 1:
        return gray
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def blurred_rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Grey-level RMSE of two thumbnails at their common size, after a light Gaussian blur.

    Both are shrunk (``cv2.INTER_AREA``) to the smaller width and the smaller height, so a
    resized copy compares with its original at the copy's resolution.

    >>> import numpy as np
    >>> x = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (128, 1))
    >>> blurred_rmse(x, cv2.resize(x, (96, 96), interpolation=cv2.INTER_AREA)) < 0.5
    True
    >>> round(blurred_rmse(np.zeros((8, 8), np.uint8), np.full((8, 8), 10, np.uint8)), 6)
    10.0
    """
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    pair = []
    for img in (a, b):
        img = img.astype(np.float32)
        if img.shape != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        pair.append(cv2.GaussianBlur(img, (0, 0), VERIFY_SIGMA))
    return float(np.sqrt(np.mean((pair[0] - pair[1]) ** 2)))
