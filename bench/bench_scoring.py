"""Benchmark: MMAD's scorer on 40,000 synthetic answer records, official and strict modes.

The records mimic a full MMAD run (39,672 questions): the four datasets with their class
counts (DS-MVTec 15, MVTec-LOCO 5, VisA 12, GoodsAD 6), about a third of the images normal,
the eight raw question types in MMAD's rough proportions, a model right about 72 % of the time
(Qwen2.5-VL-7B's 1-shot average) and 2 % of answers unparseable (raw text instead of a
letter). Times the median of ``--repeats`` calls of ``score_mmad`` per mode, including the
column preparation; the target is under 1 s each.

    python bench/bench_scoring.py [--records 40000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import polars as pl

from eval.records import records_frame
from eval.reports import format_table
from eval.scoring import score_mmad

DATASETS = {
    "DS-MVTec": ("image/{defect}/{n:03d}.png", 15),
    "MVTec-LOCO": ("test/{defect}/{n:03d}.png", 5),
    "VisA": ("test/{defect}/{n:03d}.JPG", 12),
    "GoodsAD": ("{defect}/{n:03d}.jpg", 6),
}
WEIGHTS = np.array([0.45, 0.1, 0.3, 0.15])  # share of questions per dataset
TYPES = (
    ("Anomaly Detection", 0.21),
    ("Defect Classification", 0.12),
    ("Defect Localization", 0.12),
    ("Defect Description", 0.12),
    ("Defect Analysis", 0.12),
    ("Object Classification", 0.11),
    ("Object Structure", 0.1),
    ("Object Details", 0.1),
)
DEFECTS = ("crack", "scratch", "contamination", "missing", "bad")
LETTERS = np.array(list("ABCD"))


def synthetic_records(n: int, seed: int = 0) -> pl.DataFrame:
    """``n`` answer records in a run's order (questions of one image together)."""
    rng = np.random.default_rng(seed)
    names = list(DATASETS)
    type_names = [t for t, _ in TYPES]
    type_p = np.array([p for _, p in TYPES]) / sum(p for _, p in TYPES)
    rows = []
    image_i = 0
    while len(rows) < n:
        ds = names[rng.choice(len(names), p=WEIGHTS)]
        pattern, n_classes = DATASETS[ds]
        normal = rng.random() < 0.35
        defect = "good" if normal else DEFECTS[rng.integers(len(DEFECTS))]
        path = pattern.format(defect=defect, n=image_i % 1000)
        image = f"{ds}/class{rng.integers(n_classes):02d}/{path}"
        image_i += 1
        for _ in range(int(rng.integers(2, 8))):  # questions per image
            qtype = type_names[rng.choice(len(type_names), p=type_p)]
            truth_i = int(rng.integers(4))
            roll = rng.random()
            if roll < 0.02:
                answer = "The image shows a product; I cannot decide."
            elif roll < 0.02 + 0.98 * 0.72:
                answer = str(LETTERS[truth_i])
            else:  # a wrong letter
                answer = str(LETTERS[(truth_i + rng.integers(1, 4)) % 4])
            truth = str(LETTERS[truth_i])
            rows.append(
                {
                    "image": image,
                    "question_type": qtype,
                    "correct_answer": truth,
                    "gpt_answer": answer,
                    "latency_s": float(rng.gamma(2.0, 0.4)),
                }
            )
    return records_frame(rows[:n], source="synthetic")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    records = synthetic_records(args.records)
    build_s = time.perf_counter() - started
    print(f"{records.height:,} records built in {build_s:.2f} s")

    timings = {}
    for mode in ("official", "strict"):
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            scores = score_mmad(records, mode)
            times.append(time.perf_counter() - started)
        timings[mode] = (statistics.median(times), min(times), scores)

    print(
        f"\n{'mode':<10}{'median s':>10}{'min s':>10}{'scored':>9}{'dropped':>9}{'skipped':>9}"
        f"{'headline':>10}{'< 1 s':>7}"
    )
    for mode, (median, low, scores) in timings.items():
        c = scores.counts
        print(
            f"{mode:<10}{median:>10.4f}{low:>10.4f}{c.scored:>9,}{c.dropped:>9,}{c.skipped:>9,}"
            f"{scores.headline:>10.2f}{'yes' if median < 1 else 'NO':>7}"
        )
    print()
    print(format_table(timings["official"][2]))


if __name__ == "__main__":
    main()
