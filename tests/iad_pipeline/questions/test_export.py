"""The HF export: TRL's conversational prompt, images that load, an atomic save."""

from __future__ import annotations

from pathlib import Path

import datasets
import polars as pl
import pytest

from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.questions.builders import build_questions
from iad_pipeline.questions.export import save_hf_dataset, to_hf_dataset
from iad_pipeline.questions.mmad_json import read_mmad_json
from iad_pipeline.questions.prompts import IMAGE_PLACEHOLDER, render_prompt
from iad_pipeline.questions.schema import QuestionError
from iad_pipeline.synthetic import synthesize

COLUMNS = {
    "prompt",
    "image",
    "reference_image",
    "solution",
    "boxes",
    "question_id",
    "task",
    "style",
    "sample_id",
    "question",
}


@pytest.fixture(scope="module")
def bottle(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    root = tmp_path_factory.mktemp("mvtec") / "mvtec_ad"
    synthesize("mvtec_ad", root, per_class=1, size=64, categories=["bottle"])
    return build_samples(get_spec("mvtec_ad").scan(root), workers=1).samples


def test_columns_prompts_and_images(bottle: pl.DataFrame) -> None:
    template = bottle.filter(pl.col("split") == "train")["image_path"][0]
    test = bottle.filter(pl.col("split") == "test")
    refs = dict.fromkeys(test["sample_id"], template)
    questions = build_questions(test, None, reference_images=refs)
    knowledge = {"MVTec/bottle": "<Normal Characteristics> round, green"}
    ds = to_hf_dataset(questions, knowledge=knowledge)
    assert set(ds.column_names) == COLUMNS
    assert len(ds) == questions.height
    first = ds[0]
    q = questions.row(0, named=True)
    assert first["prompt"] == [
        {"role": "user", "content": render_prompt(q, knowledge=knowledge["MVTec/bottle"])}
    ]
    assert "round, green" in first["prompt"][0]["content"]
    assert first["image"].size == (64, 64)  # decoded by datasets.Image
    assert first["reference_image"].size == (64, 64)
    assert first["solution"] == q["answer"] and first["boxes"] == []
    assert first["question"] == q["question"]  # what the prompt: question form asks
    for row in ds.select_columns(["prompt", "reference_image", "task"]):
        markers = row["prompt"][0]["content"].count(IMAGE_PLACEHOLDER)
        assert markers == (2 if row["reference_image"] is not None else 1)
        assert (row["task"] == "object_classification") == (row["reference_image"] is None)


def test_adfm_boxes_travel(bottle: pl.DataFrame) -> None:
    test = bottle.filter(pl.col("is_anomalous")).head(1)
    sid = test["sample_id"][0]
    ann = pl.DataFrame(
        {
            "sample_id": [sid],
            "grid_regions": [["center"]],
            "grid_label": ["center"],
            "localizable": [True],
            "boxes": [[[10, 10, 30, 30]]],
        },
        schema_overrides={"boxes": pl.List(pl.List(pl.Int32))},
    )
    ds = to_hf_dataset(build_questions(test, ann, styles=["adfm"]))
    assert ds[0]["solution"] == "a"
    # 64x64 -> round(64 / 28) * 28 = 56 per side; 10 * 56/64 = 8.75 -> 9, 30 * 0.875 = 26.25
    assert ds[0]["boxes"] == [[9, 9, 26, 26]]
    assert ds.features["boxes"] == datasets.List(datasets.List(datasets.Value("int32")))


def test_relative_paths_resolve_against_image_root(tmp_path: Path) -> None:
    root = tmp_path / "ALL_DATA"
    synthesize("mmad", root, per_class=1, categories=["bottle"])
    questions = read_mmad_json(root / "mmad.json")  # paths relative to the root
    ds = to_hf_dataset(questions.head(3), image_root=root)
    assert ds[0]["image"].size[0] > 0
    with pytest.raises(QuestionError, match="missing"):
        to_hf_dataset(questions.head(3))


def test_save_is_atomic_and_replaces(bottle: pl.DataFrame, tmp_path: Path) -> None:
    questions = build_questions(bottle.head(2), None, tasks=["anomaly_detection"])
    out = tmp_path / "hf"
    save_hf_dataset(to_hf_dataset(questions), out)
    assert len(datasets.load_from_disk(str(out))) == 2
    save_hf_dataset(to_hf_dataset(questions.head(1)), out)
    loaded = datasets.load_from_disk(str(out))
    assert len(loaded) == 1 and loaded[0]["image"].size == (64, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_knowledge_entries_are_shuffled_per_question_only_when_asked() -> None:
    from iad_pipeline.questions.export import join_knowledge

    entries = [f"entry {i}" for i in range(6)]
    fixed = {join_knowledge(entries, key=f"q{i}") for i in range(20)}
    assert fixed == {"\n".join(entries)}  # MMAD's order, every question
    shuffled = [join_knowledge(entries, shuffle_seed=0, key=f"q{i}") for i in range(20)]
    assert all(sorted(s.split("\n")) == entries for s in shuffled)  # all entries, once each
    assert len(set(shuffled)) > 5  # EMIT's random_join: an order per question
    again = [join_knowledge(entries, shuffle_seed=0, key=f"q{i}") for i in range(20)]
    assert again == shuffled  # seeded: the export is reproducible
    assert join_knowledge("already joined", shuffle_seed=0, key="q") == "already joined"
