"""Benchmark: annotating 2,000 1024x1024 masks against merely decoding them.

Prints, from one run: the time to decode every mask (``cv2.imread``, nothing else) and the
time of the whole ``annotate_samples`` step (decode, boxes, grid, table), each with 1 and 2
worker processes and the same pool and batching, then the annotate/decode ratio (target
<= 1.3) and the speed-up from 1 to 2 workers.

    python bench/bench_annotate.py [--masks 2000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from iad_pipeline.annotate import annotate_samples
from iad_pipeline.annotate.masks import decode_batch
from iad_pipeline.annotate.table import run_batches

SIZE = 1024


def draw_mask(rng: np.random.Generator) -> np.ndarray:
    """A few filled blobs and strokes, clustered around 1 to 3 centres, like real defects."""
    m = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = (int(v) for v in rng.integers(60, SIZE - 60, 2))
        for _ in range(int(rng.integers(1, 4))):
            x, y = cx + int(rng.integers(-80, 81)), cy + int(rng.integers(-80, 81))
            if rng.random() < 0.6:
                axes = (int(rng.integers(3, 60)), int(rng.integers(3, 60)))
                cv2.ellipse(m, (x, y), axes, float(rng.integers(0, 180)), 0, 360, 255, -1)
            else:
                dx, dy = (int(v) for v in rng.integers(-250, 251, 2))
                cv2.line(m, (x, y), (x + dx, y + dy), 255, int(rng.integers(1, 7)))
    return m


def ensure_masks(folder: Path, n: int) -> list[Path]:
    """Write ``n`` mask PNGs once; later runs reuse them (a marker says they are complete)."""
    paths = [folder / f"{i:05d}.png" for i in range(n)]
    marker = folder / f".complete-{n}"
    if marker.exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for p in paths:
        cv2.imwrite(str(p), draw_mask(rng))
    marker.touch()
    return paths


def samples_frame(paths: list[Path]) -> pl.DataFrame:
    """A samples-like table: one defective sample per mask."""
    return pl.DataFrame(
        {
            "sample_id": [f"bench/masks/test/defect/{p.stem}" for p in paths],
            "dataset": "bench",
            "category": "masks",
            "split": "test",
            "label": "defect",
            "is_anomalous": True,
            "image_path": [str(p) for p in paths],
            "mask_paths": [[str(p)] for p in paths],
            "width": SIZE,
            "height": SIZE,
        },
        schema_overrides={"width": pl.Int32, "height": pl.Int32},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=2000)
    parser.add_argument("--workdir", help="keep the masks here (reused if present)")
    args = parser.parse_args()

    tmp = None if args.workdir else tempfile.TemporaryDirectory()
    base = Path(args.workdir or tmp.name)
    t0 = time.perf_counter()
    paths = ensure_masks(base / f"masks_{SIZE}", args.masks)
    print(f"{len(paths)} masks of {SIZE}x{SIZE} ready in {time.perf_counter() - t0:.1f} s")
    total = sum(len(p.read_bytes()) for p in paths)  # page cache warm for every run
    print(f"PNG bytes: {total / 2**20:.1f} MiB, {total / len(paths) / 1024:.1f} KiB per mask")

    frame = samples_frame(paths)
    jobs = [([str(p)], SIZE, SIZE) for p in paths]
    rows = []
    for workers in (1, 2):
        t0 = time.perf_counter()
        run_batches(decode_batch, jobs, workers=workers)
        decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = annotate_samples(frame, workers=workers)
        annotate = time.perf_counter() - t0
        rows.append((workers, decode, annotate))
    ann = result.annotations
    boxes = int(ann["box_count"].sum())
    print(
        f"boxes: {boxes} ({boxes / ann.height:.2f} per mask), statuses: "
        f"{dict(ann.group_by('status').len().iter_rows())}"
    )

    n = len(paths)
    print()
    print("| workers | decode s | annotate s | decode ms/mask | annotate ms/mask | ratio |")
    print("|---|---|---|---|---|---|")
    for workers, decode, annotate in rows:
        print(
            f"| {workers} | {decode:.2f} | {annotate:.2f} | {decode / n * 1e3:.2f} | "
            f"{annotate / n * 1e3:.2f} | {annotate / decode:.2f} |"
        )
    (_, d1, a1), (_, d2, a2) = rows
    print()
    print(
        f"annotate/decode ratio: {a1 / d1:.2f} (1 worker), {a2 / d2:.2f} (2 workers); target <= 1.3"
    )
    print(f"speed-up 1 -> 2 workers: decode x{d1 / d2:.2f}, annotate x{a1 / a2:.2f}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
