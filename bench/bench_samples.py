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
import json, resource, sys, time
from pathlib import Path
from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.fsutil import write_parquet
root, workers, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
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
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "peak_mib": peak, "rows": rows}))
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
    print(f"{'measure':44s} value")
    print(f"{'samples table, default pool: wall':44s} {default['wall']:.2f} s (target < 15 s)")
    print(f"{'samples table, default pool: peak memory':44s} {default['peak_mib']:.0f} MiB")
    print(f"{'plain read of every byte: wall':44s} {read['wall']:.2f} s")
    print(f"{'samples / plain read':44s} {default['wall'] / read['wall']:.2f}x")
    print(f"{'one thread / default pool':44s} {single['wall'] / default['wall']:.2f}x")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
