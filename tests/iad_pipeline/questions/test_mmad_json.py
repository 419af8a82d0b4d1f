"""mmad.json in and out: MMAD's layout, its type merge, and lossless round trips."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from iad_pipeline.datasets.mmad import scan
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.errors import IadError
from iad_pipeline.questions.builders import build_questions
from iad_pipeline.questions.mmad_json import read_mmad_json, write_mmad_json
from iad_pipeline.questions.schema import QUESTIONS_SCHEMA, QuestionError
from iad_pipeline.synthetic import synthesize
from tests.iad_pipeline.questions.question_frames import (
    annotation,
    annotations_frame,
    sample,
    samples_frame,
)

# The columns a round trip keeps (ids, paths and provenance aside).
CONTENT = ["category", "task", "mmad_type", "question", "options", "answer", "annotation"]


@pytest.fixture(scope="module")
def mini_mmad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mmad") / "ALL_DATA"
    synthesize("mmad", root, per_class=2)
    return root


def test_reads_every_conversation_item(mini_mmad: Path) -> None:
    raw = json.loads((mini_mmad / "mmad.json").read_text())
    questions = read_mmad_json(mini_mmad / "mmad.json", mini_mmad)
    assert questions.height == sum(len(v["conversation"]) for v in raw.values())
    assert questions.schema == pl.Schema(QUESTIONS_SCHEMA)
    assert set(questions["style"]) == {"mmad"}
    assert questions["question_id"].n_unique() == questions.height
    key = "DS-MVTec/bottle/image/broken_large/000.png"
    first = questions.filter(pl.col("image_path") == str(mini_mmad / key)).row(0, named=True)
    item = raw[key]["conversation"][0]
    assert first["sample_id"] == "mmad/bottle/test/broken_large/000"
    assert first["options"] == list(item["Options"].values())
    assert first["answer"] == item["Answer"]
    assert first["question"].startswith(item["Question"] + " \nA. ")
    assert first["reference_image"] == str(mini_mmad / raw[key]["similar_templates"][0])
    assert first["knowledge_key"] == "MVTec/bottle"
    assert first["recipe_tags"] == ["raw_type:Anomaly Detection", "mmad_question:1"]


def test_object_structure_and_details_merge_into_object_analysis(mini_mmad: Path) -> None:
    questions = read_mmad_json(mini_mmad / "mmad.json")
    raw_types = questions["recipe_tags"].list.first().str.strip_prefix("raw_type:")
    merged = questions.with_columns(raw=raw_types).filter(pl.col("mmad_type") == "Object Analysis")
    assert set(merged["raw"]) == {"Object Structure", "Object Details"}
    assert set(merged["task"]) == {"object_structure", "object_details"}
    assert "Object Structure" not in set(questions["mmad_type"])


def test_sample_ids_match_the_samples_table(mini_mmad: Path) -> None:
    samples = build_samples(scan(mini_mmad), workers=1).samples
    questions = read_mmad_json(mini_mmad / "mmad.json", mini_mmad)
    assert set(questions["sample_id"]) == set(samples["sample_id"])
    paths = dict(zip(samples["sample_id"], samples["image_path"], strict=True))
    assert all(
        paths[s] == i for s, i in zip(questions["sample_id"], questions["image_path"], strict=True)
    )


def test_round_trip_of_the_mini_mmad(mini_mmad: Path, tmp_path: Path) -> None:
    first = read_mmad_json(mini_mmad / "mmad.json", mini_mmad)
    samples = build_samples(scan(mini_mmad), workers=1).samples
    out = write_mmad_json(first, tmp_path / "mmad.json", data_root=mini_mmad, samples=samples)
    again = read_mmad_json(out, mini_mmad)
    assert again.drop("question_id").equals(first.drop("question_id"))
    original = json.loads((mini_mmad / "mmad.json").read_text())
    written = json.loads(out.read_text())
    assert set(written) == set(original)
    for key, entry in written.items():
        assert entry["image_path"] == original[key]["image_path"]
        assert entry["mask_path"] == original[key]["mask_path"]  # LOCO: its folder
        assert entry["conversation"] == original[key]["conversation"]
        assert entry["similar_templates"] == original[key]["similar_templates"][:1]


def test_round_trip_of_our_own_questions(tmp_path: Path) -> None:
    rows = [
        sample("mvtec_ad", "bottle", label, f"{i:03d}")
        for i, label in enumerate(["good", "broken_large", "contamination", "good"])
    ]
    for r in rows:  # images under the data root, in <dataset>/<category>/... form
        r["image_path"] = str(tmp_path / "data" / r["relpath"])
        r["mask_paths"] = [
            str(tmp_path / "data" / m.removeprefix("/data/")) for m in r["mask_paths"]
        ]
    anns = annotations_frame(
        [annotation(r, ["top", "center"] if r["is_anomalous"] else []) for r in rows]
    )
    refs = {r["sample_id"]: str(tmp_path / "data/mvtec_ad/bottle/train/good/t.png") for r in rows}
    samples = samples_frame(rows)
    ours = build_questions(samples, anns, styles=["emit"], seed=5, reference_images=refs)
    out = write_mmad_json(
        ours, tmp_path / "q" / "mmad.json", data_root=tmp_path / "data", samples=samples
    )
    back = read_mmad_json(out, tmp_path / "data")
    assert back.select(CONTENT).equals(ours.select(CONTENT))
    assert back["image_path"].to_list() == ours["image_path"].to_list()
    assert back["reference_image"].to_list() == ours["reference_image"].to_list()
    written = json.loads(out.read_text())
    entry = written["mvtec_ad/bottle/test/broken_large/001.png"]
    assert entry["image_path"] == "test/broken_large/001.png"
    assert entry["mask_path"] == "test/broken_large/001_mask.png"
    assert (
        entry["similar_templates"]
        == entry["random_templates"]
        == ["mvtec_ad/bottle/train/good/t.png"]
    )
    assert [c["type"] for c in entry["conversation"]] == [
        "Anomaly Detection",
        "Defect Classification",
        "Defect Localization",
        "Object Classification",
    ]
    assert entry["conversation"][0]["Question"] == "Is there any defect in the object?"


def test_write_takes_given_templates(tmp_path: Path) -> None:
    row = sample("mpdd", "tubes", "good")
    questions = build_questions(samples_frame([row]), None, tasks=["anomaly_detection"])
    templates = {
        row["sample_id"]: {"similar_templates": ["a.png", "b.png"], "random_templates": ["c.png"]}
    }
    out = write_mmad_json(
        questions, tmp_path / "m.json", data_root=Path("/data"), templates=templates
    )
    (entry,) = json.loads(out.read_text()).values()
    assert (entry["similar_templates"], entry["random_templates"]) == (
        ["a.png", "b.png"],
        ["c.png"],
    )
    assert entry["mask_path"] == ""


def test_write_refuses_binary_styles_and_images_outside_the_root(tmp_path: Path) -> None:
    row = sample("mpdd", "tubes", "good")
    binary = build_questions(samples_frame([row]), None, styles=["lr_iad"])
    with pytest.raises(QuestionError, match="lr_iad"):
        write_mmad_json(binary, tmp_path / "m.json", data_root=Path("/data"))
    choice = build_questions(samples_frame([row]), None)
    with pytest.raises(QuestionError, match="not under the data root"):
        write_mmad_json(choice, tmp_path / "m.json", data_root=tmp_path)
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid json"),
        ("[1, 2]", "found list"),
        ('{"a/b/c/d.png": []}', "expected a key"),
        ('{"a/b/c/d.png": {"conversation": 3}}', "expected a list"),
        (
            '{"a/b/c/d.png": {"conversation": [{"Question": "Q", "type": "Anomaly Detection", '
            '"Options": {"A": "Yes", "B": "No"}, "Answer": "C"}]}}',
            "Answer 'C'",
        ),
        (
            '{"a/b/c/d.png": {"conversation": [{"Question": "Q", "type": "Anomaly Detection", '
            '"Options": {}, "Answer": "A"}]}}',
            "Options",
        ),
    ],
)
def test_bad_json_names_the_file(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "mmad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(IadError, match=match) as info:
        read_mmad_json(path)
    assert str(path) in str(info.value)


def test_missing_file_and_skipping_bad_entries(tmp_path: Path) -> None:
    with pytest.raises(IadError, match="not found"):
        read_mmad_json(tmp_path / "absent.json")
    good = {
        "Question": "Q?",
        "type": "Anomaly Detection",
        "Options": {"A": "Yes", "B": "No"},
        "Answer": "B",
        "annotation": True,
    }
    data = {"VisA/candle/test/good/0000.JPG": {"conversation": [good]}, "x/y": {}}
    path = tmp_path / "mmad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    questions = read_mmad_json(path, skip_invalid=True)
    assert questions.select("sample_id", "answer", "knowledge_key", "image_path").row(0) == (
        "mmad/candle/test/good/0000",
        "B",
        "VisA/candle",
        "VisA/candle/test/good/0000.JPG",
    )
    assert questions.height == 1
