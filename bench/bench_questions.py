"""Benchmark: the question bank and its mmad.json at MMAD scale (8,366 images), in memory.

Builds a samples frame shaped like MMAD's query set (its four sources and 38 categories,
about 60% anomalous, VisA labelled ``bad`` as in MMAD) and an annotations frame with grid
regions and boxes, then times, from one run: ``build_questions`` (emit style, all four
tasks, a reference image per sample) and ``write_mmad_json``. Peak memory is the process's
resident set, sampled every 10 ms (polars allocates outside Python's tracemalloc).

    python bench/bench_questions.py [--images 8366] [--styles emit]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil

from iad_pipeline.datasets.catalog import DEFECTS, MMAD_SOURCES
from iad_pipeline.datasets.samples import SAMPLES_SCHEMA
from iad_pipeline.questions.builders import build_questions
from iad_pipeline.questions.mmad_json import write_mmad_json
from iad_pipeline.questions.prompts import GRID_REGIONS

CATALOG = {"DS-MVTec": "mvtec_ad", "MVTec-LOCO": "mvtec_loco", "VisA": "visa", "GoodsAD": "goodsad"}
SIZES = {
    "DS-MVTec": (1024, 1024),
    "MVTec-LOCO": (1600, 1000),
    "VisA": (1500, 1000),
    "GoodsAD": (3000, 3000),
}
ANN_SCHEMA = {
    "sample_id": pl.String(),
    "boxes": pl.List(pl.List(pl.Int32())),
    "grid_regions": pl.List(pl.String()),
    "grid_label": pl.String(),
    "localizable": pl.Boolean(),
}


def frames(n: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, str]]:
    """Samples, annotations and reference images of ``n`` MMAD-like query images."""
    rng = np.random.default_rng(seed)
    classes = [(s, c) for s, cats in MMAD_SOURCES.items() for c in cats]
    samples, anns, refs = [], [], {}
    for i in range(n):
        source, cat = classes[int(rng.integers(len(classes)))]
        anomalous = rng.random() < 0.6
        label = "good"
        if anomalous:
            label = "bad" if source == "VisA" else str(rng.choice(DEFECTS[CATALOG[source]][cat]))
        w, h = SIZES[source]
        sid = f"mmad/{cat}/test/{label}/{i:05d}"
        path = f"/data/{source}/{cat}/test/{label}/{i:05d}.png"
        samples.append(
            {
                "sample_id": sid,
                "dataset": "mmad",
                "category": cat,
                "split": "test",
                "label": label,
                "is_anomalous": anomalous,
                "source": source,
                "image_path": path,
                "relpath": path[6:],
                "mask_paths": [path.replace("/test/", "/ground_truth/")] if anomalous else [],
                "width": w,
                "height": h,
                "sha256": "0" * 64,
            }
        )
        k = int(rng.choice([1, 1, 1, 2, 2, 3, 4, 6, 9])) if anomalous else 0
        regions = [GRID_REGIONS[j] for j in rng.permutation(9)[:k]]
        x, y = int(rng.integers(0, w - 64)), int(rng.integers(0, h - 64))
        anns.append(
            {
                "sample_id": sid,
                "boxes": [[x, y, x + 64, y + 64]] if anomalous else [],
                "grid_regions": regions,
                "grid_label": regions[0] if regions else None,
                "localizable": bool(regions),
            }
        )
        refs[sid] = f"/data/MVTec-AD/{cat}/train/good/{i % 200:03d}.png"
    return pl.DataFrame(samples, schema=SAMPLES_SCHEMA), pl.DataFrame(anns, schema=ANN_SCHEMA), refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8366)
    parser.add_argument("--styles", nargs="+", default=["emit"])
    args = parser.parse_args()

    samples, annotations, refs = frames(args.images)
    me = psutil.Process()
    base = me.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample_rss() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        questions = build_questions(samples, annotations, styles=args.styles, reference_images=refs)
        t1 = time.perf_counter()
        out = write_mmad_json(
            # mmad.json holds lettered choice questions only (not the binary styles)
            questions.filter(pl.col("style").is_in(["emit", "anomalyr1"])),
            Path(tmp) / "mmad.json",
            data_root=Path("/data"),
            samples=samples,
        )
        t2 = time.perf_counter()
        size_mb = out.stat().st_size / 1e6
    done.set()
    sampler.join()

    counts = questions.group_by("task").len().sort("task")
    print(
        f"{samples.height} images ({int(samples['is_anomalous'].sum())} anomalous), "
        f"styles {', '.join(args.styles)}, {os.cpu_count()} cores"
    )
    print("questions per task: " + ", ".join(f"{t} {n}" for t, n in counts.iter_rows()))
    rows = [
        ("questions built", f"{questions.height}"),
        ("build_questions: wall", f"{t1 - t0:.2f} s"),
        ("write_mmad_json: wall", f"{t2 - t1:.2f} s ({size_mb:.1f} MB)"),
        ("total: wall", f"{t2 - t0:.2f} s (target < 10 s)"),
        (
            "peak RSS (frames built before: base)",
            f"{peak[0] / 2**20:.0f} MiB (base {base / 2**20:.0f} MiB, "
            f"+{(peak[0] - base) / 2**20:.0f} MiB)",
        ),
    ]
    print(f"{'measure':40s} value")
    for name, value in rows:
        print(f"{name:40s} {value}")


if __name__ == "__main__":
    main()
