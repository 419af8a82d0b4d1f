"""A contact sheet of annotated samples: boxes and the 3x3 grid drawn on the images.

Shown as Dagster metadata so that a wrong dilation or a flipped axis is visible at a glance.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import polars as pl

from iad_pipeline.fsutil import write_bytes

TILE = 256
CAPTION = 22
COLUMNS = 3
BOX = (0, 0, 255)  # BGR red
GRID = (0, 215, 255)  # BGR amber
BACKGROUND = 40


def _text(img: np.ndarray, text: str, y: int) -> None:
    cv2.putText(img, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def _tile(image_path: str | None, boxes: list[list[int]], caption: str) -> np.ndarray:
    """One ``TILE`` x ``TILE + CAPTION`` BGR tile: the image fitted in, boxes, grid lines."""
    tile = np.full((TILE + CAPTION, TILE, 3), BACKGROUND, np.uint8)
    image = cv2.imread(image_path, cv2.IMREAD_COLOR) if image_path else None
    if image is None:
        _text(tile, "image unreadable", TILE // 2)
    else:
        h, w = image.shape[:2]
        s = TILE / max(h, w)
        sw, sh = max(1, round(w * s)), max(1, round(h * s))
        tile[:sh, :sw] = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        for y in (h // 3, (2 * h) // 3):  # EMIT's split points
            cv2.line(tile, (0, int(y * s)), (sw - 1, int(y * s)), GRID, 1)
        for x in (w // 3, (2 * w) // 3):
            cv2.line(tile, (int(x * s), 0), (int(x * s), sh - 1), GRID, 1)
        for x1, y1, x2, y2 in boxes:  # x2, y2 exclusive; cv2.rectangle's corner inclusive
            p1 = (int(x1 * s), int(y1 * s))
            p2 = (max(p1[0], int(x2 * s) - 1), max(p1[1], int(y2 * s) - 1))
            cv2.rectangle(tile, p1, p2, BOX, 2)
    _text(tile, caption, TILE + CAPTION - 6)
    return tile


def _sheet(tiles: list[np.ndarray]) -> np.ndarray:
    cols = min(COLUMNS, len(tiles))
    rows = -(-len(tiles) // cols)
    th, tw = tiles[0].shape[:2]
    sheet = np.zeros((rows * th, cols * tw, 3), np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = t
    return sheet


def draw_preview(
    annotations: pl.DataFrame, samples: pl.DataFrame, out: Path | str, n: int = 6, seed: int = 0
) -> Path:
    """Write a PNG contact sheet of up to ``n`` anomalous, localizable samples.

    Each tile shows the image fitted into 256 pixels, its boxes in red, EMIT's 3x3 split
    lines in amber, and ``grid label | defect label`` underneath. Samples are drawn at
    random with ``seed``. Without any localizable anomalous sample the sheet is one tile
    that says so, so the file at ``out`` is always a current, valid PNG. Written atomically.

    Args:
        annotations: The annotations table (``sample_id``, ``boxes``, ``grid_label``,
            ``label``, ``is_anomalous``, ``localizable``).
        samples: The samples table, for ``image_path``.
        out: Where to write the PNG.
        n: Most samples to draw.
        seed: Seed of the random choice.

    Returns:
        ``out``.
    """
    picks = annotations.filter(pl.col("is_anomalous") & pl.col("localizable"))
    picks = picks.sort("sample_id")
    if picks.height > n:
        picks = picks.sample(n, seed=seed).sort("sample_id")
    picks = picks.join(samples.select("sample_id", "image_path"), on="sample_id", how="left")
    tiles = [
        _tile(r["image_path"], r["boxes"], f"{r['grid_label']} | {r['label']}")
        for r in picks.iter_rows(named=True)
    ]
    if not tiles:
        tiles = [_tile(None, [], "")]
        tiles[0][:TILE] = BACKGROUND
        _text(tiles[0], "no localizable anomalous sample", TILE // 2)
    ok, data = cv2.imencode(".png", _sheet(tiles))
    if not ok:  # pragma: no cover - encoding a uint8 BGR array does not fail
        msg = f"{out}: OpenCV could not encode the preview as PNG"
        raise RuntimeError(msg)
    return write_bytes(Path(out), data.tobytes())


def preview_jpeg(path: Path, *, max_side: int = 768, quality: int = 80) -> bytes:
    """A JPEG copy of a preview sheet, small enough to embed in run metadata.

    Returns ``b""`` if the sheet is missing or unreadable.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return b""
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return data.tobytes() if ok else b""
