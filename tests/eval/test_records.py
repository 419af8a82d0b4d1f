"""Answer records: parsing adversarial responses, reading MMAD's files and ours."""

from __future__ import annotations

import json

import polars as pl
import pytest

from eval.records import (
    ANSWERS_SCHEMA,
    MMAD_ANSWER_FIELDS,
    AnswerRecordsError,
    load_answer_records,
    parse_response,
    records_frame,
    write_mmad_answers,
)

YES_NO = {"A": "Yes.", "B": "No."}
LONG_PROSE = "the surface looks uniform " * 400  # about 10 kB, no standalone capital letter


@pytest.mark.parametrize(
    ("response", "options", "expected"),
    [
        # (response, options, (MMAD's last standalone letter | closest option, think's first))
        ("", None, (None, None)),
        (None, None, (None, None)),
        ("I cannot tell.", None, (None, None)),  # "I" is no option letter
        ("No.", YES_NO, ("B", None)),  # no letter: MMAD takes the closest option text
        ("A or B? I choose C.", None, ("C", "A")),  # several letters: last vs first
        ("Answer: B", None, ("B", "B")),
        ("ABC", None, (None, None)),  # letters inside a word are no answer
        ("ABC D", None, ("D", "D")),
        ("DEFECT at the BOTTOM", None, (None, None)),
        ("b", None, (None, None)),  # lower case is not read
        ("(B)", None, ("B", "B")),
        ("<think>It might be A.</think><answer>B</answer>", None, ("B", "B")),
        ("<think>B is tempting</think><answer>A</answer> Final: C", None, ("C", "A")),
        ("<answer>C</answer><answer>D</answer>", None, ("D", "D")),  # the last block
        ("<think>A, surely", None, ("A", "A")),  # unclosed think: whole text
        ("< answer > E </ answer >", None, ("E", "E")),  # loose tags
        ("<ANSWER>A</ANSWER> B", None, ("B", "A")),  # think's tags are case-sensitive: whole text
        ("答案是 B。", None, ("B", "B")),  # CJK around a standalone letter
        ("答案是B", None, (None, None)),  # CJK letters are word characters: no boundary
        ("The answer is \uff22", None, (None, None)),  # full-width B
        ("The answer is \u0410", None, (None, None)),  # Cyrillic A
        ("Ánswer: É", None, (None, None)),
        (LONG_PROSE + "Answer: C", None, ("C", "C")),
        ("A " * 5000 + "E", None, ("E", "A")),  # 10 kB of letters
        ("<think>" * 1500 + " B", None, ("B", "B")),  # 10 kB of unclosed tags
    ],
)
def test_parse_response(response, options, expected):
    # the 10 kB cases guard against regex backtracking; parsing speed is bench_scoring.py's
    assert parse_response(response, options) == expected


MMAD_FILE = [
    {
        "image": "DS-MVTec/bottle/image/broken_large/000.png",
        "question": {
            "Question": "Is there any defect in the object?",
            "Answer": "A",
            "Options": {"A": "Yes.", "B": "No."},
            "type": "Anomaly Detection",
            "annotation": True,
        },
        "question_type": "Anomaly Detection",
        "correct_answer": "A",
        "gpt_answer": "A",
    },
    {
        "image": "VisA/candle/test/bad/002.JPG",
        "question": "What is the type of the defect?",  # a plain string is accepted too
        "question_type": "Object Details",
        "correct_answer": "C",
        "gpt_answer": "I think the wax is melted",  # nothing parsed: the raw response
    },
]


def test_load_mmad_json_list(tmp_path):
    path = tmp_path / "answers_1_shot_qwen.json"
    path.write_text(json.dumps(MMAD_FILE, indent=4), encoding="utf-8")
    df = load_answer_records(path)
    assert df.schema == pl.Schema(ANSWERS_SCHEMA)
    assert df.select("dataset", "category", "question", "question_type", "gpt_answer").rows() == [
        (
            "DS-MVTec",
            "bottle",
            "Is there any defect in the object?",
            "Anomaly Detection",
            "A",
        ),
        (
            "VisA",
            "candle",
            "What is the type of the defect?",
            "Object Details",
            "I think the wax is melted",
        ),
    ]
    # MMAD's files have no run, response or parse columns
    for column in ("run_id", "question_id", "response", "parsed_mmad", "parsed_think", "latency_s"):
        assert df[column].null_count() == 2


def test_load_our_jsonl(tmp_path):
    lines = [
        {
            "run_id": "r1",
            "question_id": "q1",
            "image": "mvtec_ad/bottle/test/good/000.png",
            "dataset": "mpdd",  # our own set: the writer names the dataset key
            "question_type": "Anomaly Detection",
            "correct_answer": "B",
            "response": "<answer>B</answer>",
            "gpt_answer": "B",
            "parsed_mmad": "B",
            "parsed_think": "B",
            "latency_s": 2,  # an int is a number
            "options": {"A": "Yes.", "B": "No."},  # unknown fields are ignored
        },
        {"image": "VisA/pcb1/test/good/001.JPG", "question_type": "Defect Analysis"},
    ]
    path = tmp_path / "answers.jsonl"
    text = "\n\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    path.write_text(text + "\n\n", encoding="utf-8")  # blank lines are skipped
    df = load_answer_records(path)
    assert df.height == 2
    assert df.row(0, named=True) == {
        "run_id": "r1",
        "question_id": "q1",
        "image": "mvtec_ad/bottle/test/good/000.png",
        "dataset": "mpdd",  # kept, not overwritten by the path
        "category": "bottle",  # filled from the path
        "question": None,
        "question_type": "Anomaly Detection",
        "correct_answer": "B",
        "response": "<answer>B</answer>",
        "gpt_answer": "B",
        "parsed_mmad": "B",
        "parsed_think": "B",
        "latency_s": 2.0,
    }
    assert df.row(1, named=True)["dataset"] == "VisA"


def test_json_extension_may_hold_jsonl_and_parquet_round_trip(tmp_path):
    path = tmp_path / "answers.json"
    path.write_text("\n".join(json.dumps(r) for r in MMAD_FILE), encoding="utf-8")
    df = load_answer_records(path)
    assert df.height == 2
    df.write_parquet(tmp_path / "answers.parquet")
    assert load_answer_records(tmp_path / "answers.parquet").equals(df)
    # a parquet file with only some columns: the rest become null
    df.select("image", "question_type").write_parquet(tmp_path / "few.parquet")
    few = load_answer_records(tmp_path / "few.parquet")
    assert few.columns == list(ANSWERS_SCHEMA)
    assert few["dataset"].to_list() == ["DS-MVTec", "VisA"]


def test_write_mmad_answers_round_trip(tmp_path):
    df = records_frame(MMAD_FILE)
    path = write_mmad_answers(df, tmp_path / "result" / "answers_1_shot_ours.json")
    written = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(written, list)
    assert [list(r) for r in written] == [list(MMAD_ANSWER_FIELDS)] * 2
    assert written[0]["question"] == "Is there any defect in the object?"
    again = load_answer_records(path)
    assert again.select(MMAD_ANSWER_FIELDS).equals(df.select(MMAD_ANSWER_FIELDS))
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_empty_files_give_empty_tables(tmp_path):
    (tmp_path / "a.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "b.json").write_text("[]", encoding="utf-8")
    for name in ("a.jsonl", "b.json"):
        df = load_answer_records(tmp_path / name)
        assert df.height == 0 and df.schema == pl.Schema(ANSWERS_SCHEMA)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("answers.csv", "a,b", "expected one of .json, .jsonl, .parquet"),
        ("bad.json", "[{]", "not valid JSON"),
        ("bad.jsonl", '{"image": "a/b", "question_type": "x"}\n{oops', "line 2"),
        ("mmad.json", '{\n "DS-MVTec/a/b.png": {"conversation": []}\n}', "is this mmad.json"),
        ("scalars.json", "[1, 2]", "record 1 is int"),
        ("number.jsonl", "42", "record 1 is int"),
        (
            "wrong_type.json",
            '[{"image": "a/b", "question_type": "x", "gpt_answer": 3}]',
            "field 'gpt_answer': found int",
        ),
        (
            "latency.json",
            '[{"image": "a/b", "question_type": "x", "latency_s": "slow"}]',
            "expected a number",
        ),
        (
            "no_image.json",
            '[{"question_type": "x"}, {"question_type": "y"}]',
            "record 1 .and 1 more. has no 'image'",
        ),
        ("no_type.jsonl", '{"image": "a/b", "question_type": ""}', "no 'question_type'"),
        ("broken.parquet", "not parquet", "not a readable parquet file"),
    ],
)
def test_load_errors_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AnswerRecordsError, match=message) as info:
        load_answer_records(path)
    assert str(path) in str(info.value)


def test_load_errors_missing_and_binary(tmp_path):
    with pytest.raises(AnswerRecordsError, match="no such file"):
        load_answer_records(tmp_path / "missing.jsonl")
    (tmp_path / "latin1.json").write_bytes(b'[{"image": "\xe9"}]')
    with pytest.raises(AnswerRecordsError, match="not UTF-8"):
        load_answer_records(tmp_path / "latin1.json")


def test_write_mmad_answers_needs_its_columns(tmp_path):
    with pytest.raises(AnswerRecordsError, match="gpt_answer"):
        write_mmad_answers(pl.DataFrame({"image": ["a/b"]}), tmp_path / "x.json")


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("deep.json", "[" * 200_000 + "]" * 200_000, "the file"),
        ("deep_record.json", '[{"image": ' + "[" * 200_000 + "]" * 200_000 + "}]", "the file"),
        ("deep.jsonl", '{"image": ' + "[" * 200_000 + "]" * 200_000 + "}\n", "line 1"),
    ],
)
def test_iad_score_of_a_200000_level_deep_file_is_a_one_line_error(
    tmp_path, capsys, name, content, where
):
    from iad_pipeline.cli import main

    path = tmp_path / name
    path.write_text(content)
    assert main(["score", str(path)]) == 1  # on main: a RecursionError traceback
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"iad: error: {path}: {where} nests JSON") and "\n" not in err
    assert main(["-v", "score", str(path)]) == 1
    assert "Traceback" in capsys.readouterr().err  # with -v only
