"""The question bank follows EMIT's rules: one correct option, seeded and stable options."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iad_pipeline.datasets.catalog import MVTEC_AD_DEFECTS
from iad_pipeline.questions.builders import ALL, NON_SEMANTIC, build_questions
from iad_pipeline.questions.prompts import (
    ADFM_PROMPT,
    EMIT_LOCATION_WORDS,
    EMIT_QUESTIONS,
    GRID_REGIONS,
    LR_IAD_TEMPLATE,
    emit_name,
    format_options,
)
from iad_pipeline.questions.schema import QUESTIONS_SCHEMA, QuestionError, check_questions
from iad_pipeline.questions.validate import invalid_questions
from tests.iad_pipeline.questions.question_frames import (
    annotation,
    annotations_frame,
    sample,
    samples_frame,
)

REGION_OF_WORD = {w: region for region, words in EMIT_LOCATION_WORDS.items() for w in words}
MVTEC_NAMES = {emit_name(d) for ds in MVTEC_AD_DEFECTS.values() for d in ds}


def correct_option(q: dict) -> str:
    return q["options"][ord(q["answer"].upper()) - ord("A")]


def only(questions: pl.DataFrame, **where: str) -> list[dict]:
    for col, value in where.items():
        questions = questions.filter(pl.col(col) == value)
    return questions.to_dicts()


# --- every question has exactly one correct option ------------------------------------------

LABELS = {
    ("mvtec_ad", "bottle"): ["good", "broken_large", "contamination"],
    ("mvtec_ad", "toothbrush"): ["good", "defective"],
    ("visa", "pcb1"): ["good", "bad"],
    ("visa", "pcb2"): ["good", "bad"],
    ("dagm", "Class1"): ["good", "defect"],
    ("mydata", "widget_2"): ["good", "scratch", "dent_3", "ünïcode_flaw"],
}


@st.composite
def frames(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    n = draw(st.integers(0, 12))
    rows, anns = [], []
    for i in range(n):
        dataset, category = draw(st.sampled_from(sorted(LABELS)))
        label = draw(st.sampled_from(LABELS[(dataset, category)]))
        row = sample(dataset, category, label, f"{i:03d}", width=draw(st.integers(28, 2000)))
        rows.append(row)
        k = draw(st.integers(0, 9)) if row["is_anomalous"] else 0
        regions = draw(st.permutations(GRID_REGIONS))[:k]
        boxes = [[0, 0, 10, 10]] if regions else []
        anns.append(
            annotation(row, regions, boxes, localizable=bool(regions) and draw(st.booleans()))
        )
    return samples_frame(rows), annotations_frame(anns)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.integers(0, 2**32 - 1))
def test_every_question_has_exactly_one_correct_option(frames, seed) -> None:
    samples, annotations = frames
    styles = ("emit", "anomalyr1", "mmad", "lr_iad", "adfm")
    questions = build_questions(samples, annotations, styles=styles, seed=seed)
    assert invalid_questions(questions).height == 0
    check_questions(questions)
    assert questions["question_id"].n_unique() == questions.height
    by_id = {r["sample_id"]: r for r in samples.to_dicts()}
    ann = {r["sample_id"]: r for r in annotations.to_dicts()}
    for q in questions.to_dicts():
        s = by_id[q["sample_id"]]
        assert 2 <= len(q["options"]) <= 4
        right = correct_option(q)
        task = q["task"]
        if task == "anomaly_detection":
            assert right == ("Yes." if s["is_anomalous"] else "No.")
            assert sorted(q["options"]) == ["No.", "Yes."]
        elif task == "defect_classification":
            assert right == emit_name(s["label"])
            assert emit_name(s["label"]) not in [o for o in q["options"] if o != right]
        elif task == "object_classification":
            assert right == emit_name(s["category"])
            assert q["options"].count(right) == 1
        elif task == "defect_localization":
            touched = set(ann[q["sample_id"]]["grid_regions"])
            regions = [REGION_OF_WORD[o] for o in q["options"]]
            assert REGION_OF_WORD[right] == ann[q["sample_id"]]["grid_label"]
            assert [r for r in regions if r in touched] == [REGION_OF_WORD[right]]
            assert len(set(regions)) == len(regions)
        else:
            assert task == "binary_anomaly"
            flagged = "defect" if q["style"] == "lr_iad" else "anomalous"
            assert right == (flagged if s["is_anomalous"] else "normal")
        if q["style"] in ("emit", "anomalyr1", "mmad"):
            assert q["question"] == EMIT_QUESTIONS[task].format(
                options=format_options(q["options"])
            )


# --- seeded and stable ------------------------------------------------------------------


def bottle_frames(n: int = 6) -> tuple[pl.DataFrame, pl.DataFrame]:
    labels = ["good", "broken_large", "broken_small", "contamination"]
    rows = [sample("mvtec_ad", "bottle", labels[i % 4], f"{i:03d}") for i in range(n)]
    anns = [annotation(r, ["center", "top"] if r["is_anomalous"] else []) for r in rows]
    return samples_frame(rows), annotations_frame(anns)


def test_same_seed_same_frame_other_seed_other_order() -> None:
    samples, annotations = bottle_frames(12)
    first = build_questions(samples, annotations, seed=7)
    again = build_questions(samples, annotations, seed=7)
    other = build_questions(samples, annotations, seed=8)
    assert first.equals(again)
    assert first["question_id"].to_list() == other["question_id"].to_list()
    assert first["options"].to_list() != other["options"].to_list()


def test_input_order_does_not_matter() -> None:
    samples, annotations = bottle_frames(8)
    a = build_questions(samples, annotations, seed=3)
    assert a.equals(build_questions(samples.reverse(), annotations.reverse(), seed=3))


def test_adding_a_sample_changes_no_other_question() -> None:
    samples, annotations = bottle_frames(6)
    before = build_questions(samples, annotations, seed=1)
    extra = sample("mvtec_ad", "bottle", "broken_small", "999")
    after = build_questions(
        pl.concat([samples, samples_frame([extra])]),
        pl.concat([annotations, annotations_frame([annotation(extra, ["left"])])]),
        seed=1,
    )
    kept = after.filter(pl.col("sample_id") != extra["sample_id"])
    assert kept.equals(before)
    assert after.height == before.height + 4


# --- distractors ------------------------------------------------------------------------


def test_defect_distractors_come_from_the_category_first() -> None:
    # cable has 8 defect names in the catalog: all 3 distractors are cable's own.
    cable = sample("mvtec_ad", "cable", "bent_wire")
    (q,) = only(build_questions(samples_frame([cable]), None), task="defect_classification")
    cable_names = {emit_name(d) for d in MVTEC_AD_DEFECTS["cable"]}
    assert set(q["options"]) <= cable_names and len(q["options"]) == 4
    assert correct_option(q) == "Bent wire."


def test_short_category_tops_up_from_its_dataset_before_the_global_pool() -> None:
    # bottle: broken_large's own others are Broken small. and Contamination.; the 4th option
    # comes from another MVTec AD category, never from another dataset.
    for seed in range(10):
        bottle = sample("mvtec_ad", "bottle", "broken_large")
        (q,) = only(
            build_questions(samples_frame([bottle]), None, seed=seed),
            task="defect_classification",
        )
        others = set(q["options"]) - {"Broken large."}
        assert {"Broken small.", "Contamination."} <= others
        assert others <= MVTEC_NAMES and len(others) == 3


def test_names_of_a_dataset_outside_the_catalog_come_from_the_samples() -> None:
    rows = [
        sample("mydata", "widget", label, f"{i:03d}")
        for i, label in enumerate(["scratch", "dent", "hole", "bend", "good"])
    ]
    questions = build_questions(samples_frame(rows), None)
    for q in only(questions, task="defect_classification"):
        assert set(q["options"]) == {"Scratch.", "Dent.", "Hole.", "Bend."}


@pytest.mark.parametrize(
    ("dataset", "category", "label"),
    [
        ("visa", "candle", "bad"),  # VisA's 1cls label
        ("dagm", "Class3", "defect"),
        ("mvtec_ad", "toothbrush", "defective"),
        ("mpdd", "tubes", "anomalous"),
    ],
)
def test_non_semantic_labels_get_no_defect_classification(dataset, category, label) -> None:
    assert label in NON_SEMANTIC
    rows = [sample(dataset, category, label), sample("mvtec_ad", "bottle", "broken_large")]
    questions = build_questions(samples_frame(rows), None)
    dc = questions.filter(pl.col("task") == "defect_classification")
    assert dc["sample_id"].to_list() == [rows[1]["sample_id"]]
    names = {emit_name(n) for n in NON_SEMANTIC}
    assert not names & set(questions.explode("options")["options"])


def test_object_distractors_come_from_the_same_dataset_first() -> None:
    row = sample("visa", "candle", "good")
    (q,) = only(build_questions(samples_frame([row]), None), task="object_classification")
    visa = {
        emit_name(c)
        for c in ("capsules", "cashew", "chewinggum", "fryum", "macaroni1", "pcb1", "pipe_fryum")
    }
    assert correct_option(q) == "Candle."
    assert set(q["options"]) - {"Candle."} <= visa


# --- localization -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("regions", "n_options"),
    [
        (["center"], 4),
        (["top left", "top", "left"], 4),
        (["top", "top left", "top right", "left", "center", "right"], 4),  # 3 untouched
        (["top", "top left", "top right", "left", "center", "right", "bottom"], 3),
        ([r for r in GRID_REGIONS if r != "bottom right"], 2),  # 8 touched: one distractor
    ],
)
def test_localization_distractors_exclude_every_touched_region(regions, n_options) -> None:
    for seed in range(5):
        row = sample("mvtec_ad", "bottle", "contamination")
        questions = build_questions(
            samples_frame([row]), annotations_frame([annotation(row, regions)]), seed=seed
        )
        (q,) = only(questions, task="defect_localization")
        picked = [REGION_OF_WORD[o] for o in q["options"]]
        assert len(picked) == n_options
        assert REGION_OF_WORD[correct_option(q)] == regions[0]
        assert set(picked) - {regions[0]} <= set(GRID_REGIONS) - set(regions)


@pytest.mark.parametrize(
    ("regions", "localizable"),
    [(list(GRID_REGIONS), True), (["center"], False), ([], False)],
)
def test_no_localization_question_when_all_touched_or_not_localizable(regions, localizable):
    row = sample("mvtec_ad", "bottle", "contamination")
    ann = annotations_frame([annotation(row, regions, localizable=localizable)])
    questions = build_questions(samples_frame([row]), ann)
    assert only(questions, task="defect_localization") == []
    assert len(only(questions, task="anomaly_detection")) == 1


def test_no_localization_without_annotations_or_for_normal_samples() -> None:
    good = sample("mvtec_ad", "bottle", "good")
    bad = sample("mvtec_ad", "bottle", "contamination", "001")
    assert only(build_questions(samples_frame([bad]), None), task="defect_localization") == []
    ann = annotations_frame([annotation(good, ["center"], localizable=True)])
    assert only(build_questions(samples_frame([good]), ann), task="defect_localization") == []


# --- binary styles ----------------------------------------------------------------------


def test_lr_iad_asks_one_binary_question_per_sample() -> None:
    rows = [sample("mvtec_ad", "metal_nut", "good"), sample("mvtec_ad", "metal_nut", "flip", "1")]
    questions = build_questions(samples_frame(rows), None, styles=["lr_iad"])
    assert questions["task"].to_list() == ["binary_anomaly"] * 2
    assert questions["answer"].to_list() == ["A", "B"]  # sorted: flip/1 before good/000
    assert questions["options"].to_list() == [["defect", "normal"]] * 2
    assert questions["question"][0] == LR_IAD_TEMPLATE.format(object_name="metal nut")
    assert questions["mmad_type"].unique().to_list() == ["Anomaly Detection"]


def test_adfm_boxes_are_in_model_space() -> None:
    # 1024x1024 at max_pixels 512*512: 37*28 = 1036 per side is too many, beta = 2,
    # floor(512 / 28) * 28 = 504. Box [100, 100, 200, 200] * 504/1024 = [49.2, ..., 98.4]
    # -> rounded half up [49, 49, 98, 98].
    row = sample("mvtec_ad", "bottle", "contamination", width=1024, height=1024)
    ann = annotations_frame([annotation(row, ["center"], [[100, 100, 200, 200]])])
    (q,) = build_questions(
        samples_frame([row]), ann, styles=["adfm"], model_max_pixels=512 * 512
    ).to_dicts()
    assert q["model_hw"] == [504, 504]
    assert q["boxes"] == [[49, 49, 98, 98]]
    assert q["answer"] == "a" and q["recipe_tags"] == []
    assert q["question"] == ADFM_PROMPT.format(object_name="bottle", width=504, height=504)


def test_adfm_asks_unlocalizable_anomalies_without_boxes() -> None:
    bad = sample("visa", "candle", "bad", width=640, height=480)
    good = sample("visa", "candle", "good", "001", width=640, height=480)
    ann = annotations_frame(
        [annotation(bad, ["center"], [[1, 1, 5, 5]], localizable=False), annotation(good)]
    )
    questions = build_questions(samples_frame([bad, good]), ann, styles=["adfm"])
    by_answer = {q["answer"]: q for q in questions.to_dicts()}
    assert by_answer["a"]["boxes"] == [] and by_answer["a"]["recipe_tags"] == ["no_boxes"]
    assert by_answer["b"]["boxes"] == [] and by_answer["b"]["recipe_tags"] == []
    # 480x640 rounds to 476x644 = 306,544 pixels > 512*512: beta = sqrt(307,200 / 262,144)
    # = 1.0825, floor(480 / 1.0825 / 28) = 15 -> 420, floor(640 / 1.0825 / 28) = 21 -> 588
    assert by_answer["b"]["model_hw"] == [420, 588]


# --- inputs -----------------------------------------------------------------------------


def test_empty_samples_give_an_empty_table() -> None:
    questions = build_questions(samples_frame([]), annotations_frame([]))
    assert questions.height == 0 and questions.schema == pl.Schema(QUESTIONS_SCHEMA)


def test_reference_images_and_knowledge_keys() -> None:
    rows = [sample("mmad", "bottle", "good", source="DS-MVTec"), sample("mpdd", "tubes", "good")]
    refs = {rows[0]["sample_id"]: "/t/ref.png"}
    questions = build_questions(
        samples_frame(rows), None, reference_images=refs, knowledge_keys={"mpdd": "MPDD"}
    )
    got = dict(zip(questions["sample_id"], questions["knowledge_key"], strict=True))
    assert got == {rows[0]["sample_id"]: "MVTec/bottle", rows[1]["sample_id"]: "MPDD/tubes"}
    refs_got = dict(zip(questions["sample_id"], questions["reference_image"], strict=True))
    assert refs_got == {rows[0]["sample_id"]: "/t/ref.png", rows[1]["sample_id"]: None}


@pytest.mark.parametrize(
    ("kwargs", "found"),
    [
        ({"tasks": ["anomaly_detection", "caption"]}, "caption"),
        ({"styles": ["emit", "llava"]}, "llava"),
        ({"styles": "emit"}, "emit"),
    ],
)
def test_unknown_tasks_and_styles_are_errors(kwargs, found) -> None:
    with pytest.raises(QuestionError, match=found):
        build_questions(samples_frame([sample("mpdd", "tubes", "good")]), None, **kwargs)


def test_duplicate_sample_ids_and_missing_columns_are_errors() -> None:
    row = sample("mpdd", "tubes", "good")
    with pytest.raises(QuestionError, match="more than once"):
        build_questions(samples_frame([row, row]), None)
    with pytest.raises(QuestionError, match=r"missing columns.*category"):
        build_questions(samples_frame([row]).drop("category"), None)
    with pytest.raises(QuestionError, match="annotations table: missing columns"):
        build_questions(samples_frame([row]), annotations_frame([]).drop("grid_label"))


def test_all_tasks_of_an_anomalous_sample() -> None:
    row = sample("mvtec_ad", "bottle", "broken_large")
    questions = build_questions(samples_frame([row]), annotations_frame([annotation(row, ["top"])]))
    assert questions["task"].to_list() == list(ALL)
