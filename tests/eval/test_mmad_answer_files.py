"""Answer files in the shapes MMAD's and EMIT's scripts write are read with their questions."""

from __future__ import annotations

import json
from pathlib import Path

from eval.records import load_answer_records

# What qwen2_5_vl_query.py / gpt4v.py append per question (jam-cc/MMAD bad03b4): the content
# part asked, numbered, with its options; json.dump with indent=4.
MMAD_RECORDS = [
    {
        "image": "DS-MVTec/bottle/image/broken_large/000.png",
        "question": {
            "type": "text",
            "text": "Question 1: Is there any defect in the object? \nA. Yes.\nB. No.\n",
            "options": {"A": "Yes.", "B": "No."},
        },
        "question_type": "Anomaly Detection",
        "correct_answer": "A",
        "gpt_answer": "A",
    },
    {
        "image": "DS-MVTec/bottle/image/broken_large/000.png",
        "question": {
            "type": "text",
            "text": (
                "Question 2: There is a defect in the object. What is the type of the "
                "defect? \nA. Contamination.\nB. Broken.\nC. Scratch.\nD. Crack.\n"
            ),
            "options": {"A": "Contamination.", "B": "Broken.", "C": "Scratch.", "D": "Crack."},
        },
        "question_type": "Defect Classification",
        "correct_answer": "B",
        "gpt_answer": "C",
    },
]
# evaluate_batch_mmad_choice.py (guanwei49/EMIT 01dc319): unnumbered text, options beside it.
EMIT_RECORD = {
    "image": "VisA/candle/test/bad/002.JPG",
    "question": {"type": "text", "text": "Where is the defect? \nA. Top.\nB. Left.\n"},
    "question_type": "Defect Localization",
    "options": {"A": "Top.", "B": "Left."},
    "correct_answer": "A",
    "gpt_answer": "A",
}


def test_mmad_answer_file_questions_are_read(tmp_path: Path) -> None:
    path = tmp_path / "answers_1_shot_Qwen2.5-VL-7B-Instruct.json"
    path.write_text(json.dumps(MMAD_RECORDS, indent=4))
    df = load_answer_records(path)
    assert df["question"].to_list() == [
        "Is there any defect in the object?",
        "There is a defect in the object. What is the type of the defect?",
    ]
    assert df["gpt_answer"].to_list() == ["A", "C"]
    assert df["dataset"].to_list() == ["DS-MVTec", "DS-MVTec"]


def test_emit_answer_file_question_is_read(tmp_path: Path) -> None:
    path = tmp_path / "Answer_choice.json"
    path.write_text(json.dumps([EMIT_RECORD], indent=4))
    assert load_answer_records(path)["question"].to_list() == ["Where is the defect?"]
