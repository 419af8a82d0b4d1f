"""Benchmark: the samples table of a synthetic tree of 30,000 images on this machine.

Prints, from one run: wall time and peak memory of building the table (layout scan, header
read, sha256, truncation check, mask pairing and size check, parquet write), and ratios
against a plain read of the same bytes and against a single reader thread.

    python bench/bench_samples.py [--images 30000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, threading, time
from pathlib import Path
import psutil
from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.fsutil import write_parquet
root, workers, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
peak = [0, 0]  # whole process tree, main process; sampled every 20 ms
done = threading.Event()
def sample():
    me = psutil.Process()
    while not done.is_set():
        try:
            tree = me.memory_info().rss + sum(
                c.memory_info().rss for c in me.children(recursive=True))
        except psutil.Error:
            continue
        peak[0] = max(peak[0], tree)
        peak[1] = max(peak[1], me.memory_info().rss)
        time.sleep(0.02)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
t0 = time.perf_counter()
if mode == "read":
    n = sum(len(p.read_bytes()) for p in root.rglob("*") if p.is_file())
    rows = n
else:
    spec = get_spec("mvtec_ad")
    result = build_samples(spec.scan(root), workers=int(workers) if workers != "0" else None)
    write_parquet(result.samples, root.parent / "samples.parquet")
    rows = result.samples.height
wall = time.perf_counter() - t0
done.set()
sampler.join()
print(json.dumps({"wall": wall, "tree_mib": peak[0] / 2**20, "main_mib": peak[1] / 2**20,
                  "rows": rows}))
"""


def run(root: Path, workers: int, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(workers), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30_000)
    parser.add_argument("--workdir", help="keep the synthetic tree here (reused if present)")
    args = parser.parse_args()

    from iad_pipeline.synthetic import synthesize

    tmp = None if args.workdir else tempfile.TemporaryDirectory()
    base = Path(args.workdir or tmp.name)
    root = base / f"mvtec_ad_{args.images}"
    # 15 categories; per_class images in every label folder, 2x in train/good: ~118 per class
    per_class = max(1, round(args.images / 354 * 3))
    if not root.exists():
        t0 = time.perf_counter()
        report = synthesize("mvtec_ad", root, per_class=per_class)
        print(
            f"synthesized {report.n_images} images ({report.n_masks} masks) in "
            f"{time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )
    files = [p for p in root.rglob("*") if p.is_file()]
    size_mb = sum(p.stat().st_size for p in files) / 1e6

    run(root, 0, "read")  # warm the page cache so every variant reads from memory
    read = run(root, 0, "read")
    default = run(root, 0, "samples")
    single = run(root, 1, "samples")
    print(
        f"tree: {default['rows']} images, {len(files)} files, {size_mb:.0f} MB, "
        f"{os.cpu_count()} cores"
    )
    rows = [
        ("samples table, default pool: wall", f"{default['wall']:.2f} s (target < 15 s)"),
        (
            "samples table: peak memory, all processes",
            f"{default['tree_mib']:.0f} MiB (main process {default['main_mib']:.0f} MiB)",
        ),
        ("plain read of every byte: wall", f"{read['wall']:.2f} s"),
        ("samples / plain read", f"{default['wall'] / read['wall']:.2f}x"),
        ("workers=1 / default (one process per core)", f"{single['wall'] / default['wall']:.2f}x"),
    ]
    print(f"{'measure':44s} value")
    for name, value in rows:
        print(f"{name:44s} {value}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
