"""MMAD's errata: each entry names its issue, and applying them changes exactly what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.errata import ErrataError, apply_errata, load_errata
from eval.mmad_files import mmad_templates
from eval.protocols import Protocol
from iad_pipeline.questions.mmad_json import read_mmad_json

AD = {"question": "Is there any defect in the object?", "options": {"A": "Yes.", "B": "No."}}


def entry(conversation, similar=("MVTec-AD/x/train/good/000.png",)) -> dict:
    return {
        "image_path": "image/x/000.png",
        "mask_path": "",
        "similar_templates": list(similar),
        "random_templates": list(similar),
        "conversation": conversation,
    }


def q(question, options, answer, kind):
    return {"Question": question, "Options": options, "Answer": answer, "type": kind}


MMAD = {
    "DS-MVTec/bottle/image/broken_large/016.png": entry(
        [
            q(**AD, answer="A", kind="Anomaly Detection"),
            q(
                "There is a defect in the object. Where is the defect?",
                {"A": "At the bottom.", "B": "Around the edges.", "C": "Around the center."},
                "C",
                "Defect Localization",
            ),
        ],
        similar=("MVTec-AD/bottle/train/good/000.png", "MVTec-AD/bottle/train/good/404.png"),
    ),
    "DS-MVTec/pill/image/good/003.png": entry(
        [
            q(**AD, answer="B", kind="Anomaly Detection"),
            q(
                "What kind of product is in the image?",
                {"A": "Pill.", "B": "Metal nut."},
                "B",
                "Object Classification",
            ),
        ]
    ),
    "DS-MVTec/pill/image/good/004.png": entry(
        [
            q(**AD, answer="B", kind="Anomaly Detection"),
            q(
                "What kind of product is in the image?",
                {"A": "Pill.", "B": "Screw."},
                "A",
                "Object Classification",
            ),
        ]
    ),
    "DS-MVTec/transistor/image/misplaced/001.png": entry(
        [
            q(**AD, answer="A", kind="Anomaly Detection"),
            q(
                "Where is the defect?",
                {"A": "On the middle leg.", "B": "Whole."},
                "A",
                "Defect Localization",
            ),
        ]
    ),
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "mmad.json").write_text(json.dumps(MMAD))
    good = tmp_path / "MVTec-AD/bottle/train/good"
    good.mkdir(parents=True)
    (good / "000.png").write_bytes(b"png")  # 404.png is missing
    return tmp_path


def test_every_erratum_names_its_issue_and_what_is_wrong():
    version, errata = load_errata()
    assert version >= 1
    assert {e.source for e in errata} >= {
        "jam-cc/MMAD#6",
        "jam-cc/MMAD#15, jam-cc/MMAD#19",
        "jam-cc/MMAD#18",
        "jam-cc/MMAD#20",
    }
    assert all(len(e.what) > 20 for e in errata)


def test_corrected_mmad_changes_exactly_the_errata(root: Path):
    questions = read_mmad_json(root / "mmad.json", root)
    fixed = apply_errata(questions, mmad_templates(root / "mmad.json"), root)
    assert fixed.changes == {
        "missing-template-files": 2 + 3 * 2,  # 404.png twice, and the x templates of 3 images
        "metal-nut-in-pill-good": 2,  # both questions of pill/good/003.png
        "bottle-broken-large-016-location": 1,
        "transistor-misplaced-location": 1,
    }
    assert questions.height - fixed.questions.height == 3
    bottle = fixed.questions.filter(
        fixed.questions["image_path"].str.ends_with("broken_large/016.png")
    )
    assert bottle["answer"].to_list() == ["A", "B"]  # "Around the edges."
    assert fixed.templates["DS-MVTec/bottle/image/broken_large/016.png"]["similar"] == [
        "MVTec-AD/bottle/train/good/000.png"
    ]
    # the original is untouched
    assert read_mmad_json(root / "mmad.json", root).equals(questions)


def test_the_version_is_part_of_the_protocol():
    corrected = Protocol(mmad_version="corrected")
    assert corrected.name == "1shot-random+mmad_corrected"
    assert corrected.record()["errata_version"] == load_errata()[0]
    assert Protocol().record()["errata_version"] is None
    assert corrected.key != Protocol().key


def test_a_bad_errata_file_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "errata.yaml"
    path.write_text(
        "version: 1\nerrata:\n  - {id: x, keys: '*', action: guess, what: w, source: s}\n"
    )
    with pytest.raises(ErrataError, match="action 'guess'"):
        load_errata(path)
