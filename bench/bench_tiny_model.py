"""Benchmark: building the tiny Qwen2.5-VL and InternVL3 test models (offline, from a seed).

The test suite builds these folders in many fixtures, so their cost is paid on every run.
Prints, per builder, the first build (which pays for transformers' lazy imports), the best and
the median of ``--repeats`` further builds, and the folder's size. Target: best under 1 s and
under 2 MB for the Qwen2.5-VL model on a shared 2-core machine (tests never assert it).

    python bench/bench_tiny_model.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from training.tiny_internvl import build_tiny_internvl3
from training.tiny_model import build_tiny_qwen25vl

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "qwen2.5-vl": build_tiny_qwen25vl,
    "internvl3": build_tiny_internvl3,
}


def timed(build: Callable[[Path], Path], out: Path) -> float:
    start = time.perf_counter()
    build(out)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'model':<12} {'first s':>8} {'best s':>8} {'median s':>9} {'size kB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in BUILDERS.items():
            out = Path(tmp) / name
            first = timed(build, out)
            runs = [timed(build, out) for _ in range(args.repeats)]
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1000
            print(
                f"{name:<12} {first:8.2f} {min(runs):8.2f} {statistics.median(runs):9.2f} "
                f"{size:8.0f}"
            )


if __name__ == "__main__":
    main()
