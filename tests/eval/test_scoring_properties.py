"""MMAD scoring on random answer files: order does not matter, the cells equal an independent
per-cell tally, and strict equals official where no quirk applies."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from eval.scoring import (
    Counts,
    score_mmad,
)
from iad_pipeline.questions.prompts import MMAD_RAW_TYPES
from tests.support.mmad_answers import (
    AD,
    OA,
    OD,
    OS,
    cells,
    load,
    rec,
)

# -- properties --------------------------------------------------------------------------------
DATASETS = {"DS-MVTec": ["bottle", "cable"], "VisA": ["candle"], "GoodsAD": ["drink_can"]}
record_strategy = st.builds(
    lambda ds, cat_i, normal, qtype, truth, answer, n: rec(
        f"{ds}/{DATASETS[ds][cat_i % len(DATASETS[ds])]}/{'good' if normal else 'bad'}/{n}.png",
        qtype,
        truth,
        answer,
    ),
    st.sampled_from(sorted(DATASETS)),
    st.integers(0, 1),
    st.booleans(),
    st.sampled_from(MMAD_RAW_TYPES),
    st.sampled_from("ABCDE"),
    st.sampled_from("ABCDE"),
    st.integers(0, 99),
)


def plain_cells(rows: list[dict]) -> dict[tuple[str, str], float]:
    """Independent reference: per cell plain accuracy, AD balanced over 'good' paths."""
    tally: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        ds, qtype = r["image"].split("/")[0], r["question_type"]
        qtype = OA if qtype in (OS, OD) else qtype
        side = ("good" in r["image"]) if qtype == AD else None
        t = tally[(ds, qtype, side)]
        t[0] += r["gpt_answer"] == r["correct_answer"]
        t[1] += 1
    out = {}
    for ds in {r["image"].split("/")[0] for r in rows}:
        for qtype in {OA if r["question_type"] in (OS, OD) else r["question_type"] for r in rows}:
            if qtype == AD:
                accs = [tally[(ds, AD, s)] for s in (True, False)]
                out[(ds, qtype)] = sum(c / t if t else 0 for c, t in accs) / 2 * 100
            else:
                c, t = tally[(ds, qtype, None)]
                out[(ds, qtype)] = c / t * 100 if t else 0
    return out


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(record_strategy, min_size=1, max_size=60), seed=st.integers(0, 2**16))
def test_shuffling_parseable_records_keeps_official_scores(tmp_path_factory, rows, seed):
    tmp_path = tmp_path_factory.mktemp("shuffle")
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    first = score_mmad(load(tmp_path, rows))
    second = score_mmad(load(tmp_path, shuffled))
    first_cells, second_cells = cells(first), cells(second)
    assert first_cells.keys() == second_cells.keys()
    for key, value in first_cells.items():
        if "Average" in key:  # means add in another order: equal up to rounding
            assert second_cells[key] == pytest.approx(value, rel=1e-12)
        else:
            assert second_cells[key] == value
            assert value == plain_cells(rows)[key]
    assert second.headline == pytest.approx(first.headline, rel=1e-12)
    assert first.counts == second.counts == Counts(len(rows), 0, 0)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(record_strategy, max_size=40))
def test_strict_equals_official_without_unparseable_answers_or_empty_cells(tmp_path_factory, rows):
    tmp_path = tmp_path_factory.mktemp("strict")
    # every dataset gets every type, and both sides of anomaly detection
    cover = [
        rec(f"{ds}/{cats[0]}/{side}/x.png", qtype, "A", "A")
        for ds, cats in DATASETS.items()
        for qtype in MMAD_RAW_TYPES
        for side in ("good", "bad")
    ]
    df = load(tmp_path, cover + rows)
    official, strict = score_mmad(df), score_mmad(df, "strict")
    assert_frame_equal(official.table, strict.table)
    assert_frame_equal(official.by_category, strict.by_category)
    assert_frame_equal(official.extras, strict.extras)
