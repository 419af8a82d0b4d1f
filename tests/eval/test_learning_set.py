"""The held-out learning set: balanced, drawn once, its own name, and an ablation that swaps
only the copy's pixels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from eval.learning_set import LEARNING_SOURCE, write_ablation, write_learning_set
from iad_pipeline.errors import IadError


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def learning(tmp_path_factory):
    return write_learning_set(tmp_path_factory.mktemp("learn") / "data", n=24)


def test_half_defect_free_evenly_over_categories_detection_only(learning) -> None:
    q = learning.questions
    assert q.height == 24
    assert set(q["mmad_type"]) == {"Anomaly Detection"}
    assert set(q["source"]) == {LEARNING_SOURCE}
    counts = q.group_by("category", "finding").len()
    assert counts.height == 4 and set(counts["len"]) == {6}
    # the finding is the truth of the image: defect-free queries sit in `good` folders
    good = q.filter(pl.col("image_path").str.contains("/good/"))
    assert set(good["finding"]) == {"No"} and good.height == 12
    assert q["question_id"].n_unique() == 24


def test_the_same_draw_is_reused_and_another_size_redrawn(learning) -> None:
    again = write_learning_set(learning.data, n=24)
    assert again.questions.equals(learning.questions)
    bigger = write_learning_set(learning.data.parent / "other", n=40)
    assert bigger.questions.height == 40
    # another draw puts other pixels at the same MMAD paths: other question ids, so a
    # checkpoint's stored answers to this draw are never taken for that one's
    other = write_learning_set(learning.data.parent / "seed2", n=24, seed=2)
    assert set(other.questions["image_path"].str.split("/mmad/").list.last()) & set(
        learning.questions["image_path"].str.split("/mmad/").list.last()
    )
    assert not set(other.questions["question_id"]) & set(learning.questions["question_id"])


def test_a_set_too_small_for_its_categories_is_refused(tmp_path) -> None:
    with pytest.raises(IadError, match="n=3"):
        write_learning_set(tmp_path / "d", n=3)


def test_the_ablation_shows_the_reference_in_a_copy(learning, tmp_path) -> None:
    before = {p: _digest(p) for p in learning.questions["image_path"]}
    moved = write_ablation(learning, tmp_path / "ablation", "similar")
    assert moved.height == learning.questions.height
    for row in moved.iter_rows(named=True):
        assert row["image_path"].startswith(str((tmp_path / "ablation").absolute()))
        # a normal image where the query was; the learning set itself is untouched
        original = row["image_path"].replace(
            str((tmp_path / "ablation" / "mmad").absolute()), str(learning.mmad_root.absolute())
        )
        assert _digest(original) == before[original]
    changed = sum(
        _digest(m) != _digest(o)
        for m, o in zip(moved["image_path"], learning.questions["image_path"], strict=True)
    )
    assert changed == moved.height
