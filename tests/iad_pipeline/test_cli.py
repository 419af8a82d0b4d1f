"""The iad command line: --help everywhere, one-line reasons and non-zero codes on failure."""

import hashlib
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from iad_pipeline.cli import main
from iad_pipeline.datasets.catalog import DATASET_KEYS

VERBS = [
    ["--help"],
    ["datasets", "--help"],
    ["datasets", "list", "--help"],
    ["datasets", "fetch", "--help"],
    ["datasets", "synth", "--help"],
    ["samples", "--help"],
    ["annotate", "--help"],
    ["questions", "--help"],
    ["score", "--help"],
    ["train", "--help"],
    ["knowledge", "generate", "--help"],
    ["knowledge", "show", "--help"],
]


@pytest.mark.parametrize("argv", VERBS, ids=" ".join)
def test_every_verb_has_help(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: iad" in capsys.readouterr().out


def test_datasets_list_shows_all_nine(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "iad_pipeline.cli", "datasets", "list", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    for key in DATASET_KEYS:
        assert key in proc.stdout
    assert "CC BY 4.0" in proc.stdout and "manual" in proc.stdout


def test_synth_archive_prints_path_and_sha256_last(tmp_path, capsys) -> None:
    out = tmp_path / "mpdd"
    code = main(
        [
            "datasets",
            "synth",
            "mpdd",
            "--out",
            str(out),
            "--per-class",
            "1",
            "--categories",
            "tubes",
            "--archive",
            "-q",
        ]
    )
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    path, digest = last.split(" ")
    assert Path(path) == tmp_path / "MPDD.zip"
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest


def test_fetch_then_samples_then_list(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    src = tmp_path / "src"
    main(
        [
            "datasets",
            "synth",
            "dagm",
            "--out",
            str(src),
            "--per-class",
            "1",
            "--categories",
            "Class3",
            "-q",
        ]
    )
    data = tmp_path / "data"
    assert (
        main(
            [
                "datasets",
                "fetch",
                "dagm",
                "--data-dir",
                str(data),
                "--from",
                str(src),
                "--accept-license",
                "-q",
            ]
        )
        == 0
    )
    assert "installed (folder)" in capsys.readouterr().out
    out = tmp_path / "tables" / "dagm.parquet"
    assert main(["samples", "dagm", "--data-dir", str(data), "--out", str(out), "-q"]) == 0
    assert pl.read_parquet(out).height == 2 * (2 + 1)  # Train + Test, each 2 normal + 1 defect
    assert pl.read_parquet(tmp_path / "tables" / "dagm.quarantine.parquet").height == 0
    capsys.readouterr()
    main(["datasets", "list", "--data-dir", str(data)])
    assert "yes (folder)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["datasets", "fetch", "mvtec_ad", "-q"], "--accept-license"),
        (["datasets", "fetch", "mpdd", "--accept-license", "-q"], "--from PATH"),
        (["datasets", "fetch", "visa", "--from", "/nonexistent/visa", "-q"], "no such file"),
        (["datasets", "fetch", "visa", "--sha256", "beef", "-q"], "64 hex digits"),
        (["samples", "visa", "--out", "x.parquet", "-q"], "is not installed"),
    ],
)
def test_failures_exit_non_zero_with_one_line(argv, reason, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IAD_HOME", str(tmp_path))
    monkeypatch.delenv("IAD_ACCEPT_LICENSES", raising=False)
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("iad: error: ")]
    assert errors == [lines[-1]]  # exactly one reason, on one line, at the end
    assert reason in lines[-1]


def test_unknown_key_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["datasets", "fetch", "mvtec"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.fixture
def installed_loco(tmp_path, monkeypatch):
    """MVTec LOCO (one category) installed with --from, and its samples table built."""
    monkeypatch.setenv("IAD_HOME", str(tmp_path / "home"))
    src = tmp_path / "src"
    main(
        [
            "datasets",
            "synth",
            "mvtec_loco",
            "--out",
            str(src),
            "--per-class",
            "1",
            "--categories",
            "pushpins",
            "-q",
        ]
    )
    data = tmp_path / "data"
    main(
        [
            "datasets",
            "fetch",
            "mvtec_loco",
            "--data-dir",
            str(data),
            "--from",
            str(src),
            "--accept-license",
            "-q",
        ]
    )
    assert main(["samples", "mvtec_loco", "--data-dir", str(data), "--workers", "1", "-q"]) == 0
    return data


@pytest.fixture
def annotated_loco(installed_loco):
    argv = ["annotate", "mvtec_loco", "--data-dir", str(installed_loco), "--workers", "1", "-q"]
    assert main(argv) == 0
    return installed_loco


def test_annotate_writes_boxes_and_grid(installed_loco, tmp_path) -> None:
    out = tmp_path / "ann.parquet"
    assert (
        main(
            [
                "annotate",
                "mvtec_loco",
                "--data-dir",
                str(installed_loco),
                "--out",
                str(out),
                "--workers",
                "1",
                "-q",
            ]
        )
        == 0
    )
    df = pl.read_parquet(out)
    anomalous = df.filter(pl.col("is_anomalous"))
    assert anomalous.height == 2  # per_class 1: one logical + one structural anomaly
    assert anomalous["box_count"].min() >= 1
    assert set(anomalous["status"]) == {"ok"}
    assert anomalous["grid_label"].null_count() == 0
    assert (tmp_path / "ann.quarantine.parquet").is_file()


def test_questions_in_mmad_format_are_readable_back(annotated_loco, tmp_path) -> None:
    installed_loco = annotated_loco
    import json

    from iad_pipeline.questions.mmad_json import read_mmad_json

    out = tmp_path / "loco_mmad.json"
    assert (
        main(
            [
                "questions",
                "mvtec_loco",
                "--data-dir",
                str(installed_loco),
                "--styles",
                "emit",
                "--format",
                "mmad",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    # keys are image paths relative to the data dir, as MMAD's scripts expect
    for key, entry in data.items():
        assert (installed_loco / key).is_file()
        assert entry["conversation"]
        assert {"image_path", "mask_path", "similar_templates", "random_templates"} <= set(entry)
    back = read_mmad_json(out, installed_loco)
    assert back.height == sum(len(v["conversation"]) for v in data.values())


def test_questions_parquet_with_a_task_filter(annotated_loco, tmp_path) -> None:
    installed_loco = annotated_loco
    out = tmp_path / "q.parquet"
    assert (
        main(
            [
                "questions",
                "mvtec_loco",
                "--data-dir",
                str(installed_loco),
                "--tasks",
                "defect_localization",
                "--styles",
                "emit",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    q = pl.read_parquet(out)
    assert set(q["task"]) == {"defect_localization"}
    assert q.height == 2


def test_score_reads_mmads_answer_format_and_writes_its_csv(tmp_path, capsys) -> None:
    import csv
    import json

    records = [
        {
            "image": "DS-MVTec/bottle/image/good/000.png",
            "question": "Q",
            "question_type": "Anomaly Detection",
            "correct_answer": "B",
            "gpt_answer": "B",
        },
        {
            "image": "DS-MVTec/bottle/image/crack/000.png",
            "question": "Q",
            "question_type": "Anomaly Detection",
            "correct_answer": "A",
            "gpt_answer": "B",
        },
        {
            "image": "DS-MVTec/bottle/image/crack/000.png",
            "question": "Q",
            "question_type": "Defect Classification",
            "correct_answer": "C",
            "gpt_answer": "C",
        },
    ]
    path = tmp_path / "answers_1_shot_model.json"
    path.write_text(json.dumps(records))
    out = tmp_path / "acc.csv"
    assert main(["score", str(path), "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0][0] == "" and rows[0][1:3] == ["Anomaly Detection", "Defect Classification"]
    # AD cell = mean of normal (1/1) and anomaly (0/1) accuracy = 50; DC = 100
    assert [float(v) for v in rows[1][1:3]] == [50.0, 100.0]
    assert "DS-MVTec" in capsys.readouterr().out


def test_score_of_a_missing_file_is_a_one_line_error(tmp_path, capsys) -> None:
    assert main(["score", str(tmp_path / "nope.json")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("iad: error: ")
