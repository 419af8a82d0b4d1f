"""One layout from the CLI to the UI: the same files, the same places, output for scripts."""

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from iad_pipeline.cli import main
from iad_pipeline.paths import Layout

ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "IAD_HOME": str(home),
        "HOME": str(home),
        **extra,
    }


def _iad(home: Path, *argv: str, check: bool = True, **env: str):
    return subprocess.run(
        [sys.executable, "-m", "iad_pipeline.cli", *argv],
        capture_output=True,
        text=True,
        check=check,
        env=_env(home, **env),
        cwd=home,
    )


@pytest.fixture
def loco_home(tmp_path, monkeypatch):
    """A home with a synthetic MVTec LOCO category installed by ``iad datasets synth``."""
    monkeypatch.setenv("IAD_HOME", str(tmp_path))
    monkeypatch.delenv("IAD_PROFILE", raising=False)
    argv = ["datasets", "synth", "mvtec_loco", "--per-class", "1", "--categories", "pushpins"]
    assert main([*argv, "-q"]) == 0
    return tmp_path


def test_synth_installs_into_the_profiles_data_folder(loco_home, capsys) -> None:
    layout = Layout.resolve(loco_home, "demo")
    assert (layout.data / "mvtec_loco.complete").is_file()
    marker = json.loads((layout.data / "mvtec_loco.complete").read_text())
    assert marker["synthetic"] is True and marker["mode"] == "archive"
    # then samples works with no other step (the README's order)
    assert main(["samples", "mvtec_loco", "--workers", "1", "-q"]) == 0
    assert pl.read_parquet(layout.table("samples", "mvtec_loco")).height == 6
    # a second synth of an installed dataset changes nothing
    capsys.readouterr()
    assert main(["datasets", "synth", "mvtec_loco", "-q"]) == 0
    assert "already installed" in capsys.readouterr().out


def test_cli_and_assets_write_byte_identical_tables(loco_home) -> None:
    from assets.annotations import annotations
    from assets.ingest import samples
    from assets.questions import question_bank
    from iad_pipeline.resources import IadConfig

    layout = Layout.resolve(loco_home, "demo")
    for argv in (
        ["samples", "mvtec_loco", "--workers", "1"],
        ["annotate", "mvtec_loco", "--workers", "1"],
        ["questions", "mvtec_loco"],
    ):
        assert main([*argv, "-q"]) == 0
    files = [
        layout.table("samples", "mvtec_loco"),
        layout.quarantine("samples", "mvtec_loco"),
        layout.table("annotations", "mvtec_loco"),
        layout.quarantine("annotations", "mvtec_loco"),
        layout.table("questions", "mvtec_loco"),
    ]
    by_cli = {p: p.read_bytes() for p in files}
    for p in files:
        p.unlink()
    iad = IadConfig(home=str(loco_home), profile="demo", workers=1)
    with dg.instance_for_test() as instance:
        for asset in (samples, annotations, question_bank):
            result = dg.materialize(
                [asset], partition_key="mvtec_loco", resources={"iad": iad}, instance=instance
            )
            assert result.success
    assert {p: p.read_bytes() for p in files} == by_cli


def test_listings_are_plain_and_complete_in_a_pipe(tmp_path) -> None:
    proc = _iad(tmp_path, "datasets", "list", COLUMNS="40")
    lines = proc.stdout.splitlines()
    assert lines[0].split("\t") == ["key", "name", "licence", "size", "download", "installed"]
    assert [line for line in lines if line.startswith("dtd_synthetic\t")]  # never cut
    rows = json.loads(_iad(tmp_path, "datasets", "list", "--json").stdout)
    assert {r["key"] for r in rows} >= {"dtd_synthetic", "mmad", "mvtec_3d"}
    assert all(r["installed"] == "no" for r in rows)
    # a reader that stops early (head) ends the listing quietly
    piped = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m iad_pipeline.cli datasets list --json | head -c 5"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    assert piped.stdout == '[{"ke' and "error" not in piped.stderr


def test_profile_flag_and_environment_pick_the_same_root(tmp_path) -> None:
    _iad(tmp_path, "datasets", "synth", "mpdd", "--per-class", "1", "--categories", "tubes", "-q")
    demo = json.loads(_iad(tmp_path, "datasets", "list", "--json").stdout)
    real = json.loads(_iad(tmp_path, "datasets", "list", "--json", "--profile", "real").stdout)
    env_real = json.loads(_iad(tmp_path, "datasets", "list", "--json", IAD_PROFILE="real").stdout)
    installed = {r["key"]: r["installed"] for r in demo}
    assert installed["mpdd"] == "yes (archive, synthetic)"
    assert {r["key"]: r["installed"] for r in real}["mpdd"] == "no"
    assert env_real == real
    assert (tmp_path / "demo" / "data" / "mpdd.complete").is_file()


def test_questions_in_mmad_format_keep_the_choice_styles_and_say_what_was_left_out(
    loco_home, capsys
) -> None:
    assert main(["samples", "mvtec_loco", "--workers", "1", "-q"]) == 0
    assert main(["annotate", "mvtec_loco", "--workers", "1", "-q"]) == 0
    out = loco_home / "loco_mmad.json"
    capsys.readouterr()
    assert main(["questions", "mvtec_loco", "--format", "mmad", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "left out styles adfm, lr_iad" in " ".join(err.split())
    data = json.loads(out.read_text())
    assert data and all(entry["conversation"] for entry in data.values())


@pytest.mark.parametrize(
    ("argv", "fix"),
    [
        (["annotate", "visa"], "run iad samples visa"),
        (["samples", "visa"], "iad datasets fetch visa"),
        (["train", "--recipe", "demo"], "materialize training_set[emit]"),
        (["train", "--recipe", "no_such_recipe"], "no_such_recipe"),
        (["knowledge", "show", "visa", "candle"], "iad knowledge generate visa"),
        (["eval", "/nonexistent/ckpt", "--set", "VisA"], "no such checkpoint"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, argv, fix) -> None:
    proc = _iad(tmp_path, *argv, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith("iad: error: ")]) == 1
    assert lines[-1].startswith("iad: error: ") and fix in lines[-1]
    assert "Traceback" not in proc.stderr


def test_verbose_shows_the_traceback_of_a_user_error(tmp_path) -> None:
    verbose = _iad(tmp_path, "-v", "annotate", "visa", check=False)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("iad: error: ")


def test_tables_survive_a_moved_home_and_refuse_paths_outside_it(loco_home, tmp_path) -> None:
    import shutil

    from iad_pipeline.errors import IadError
    from iad_pipeline.stages import read_table

    assert main(["samples", "mvtec_loco", "--workers", "1", "-q"]) == 0
    layout = Layout.resolve(loco_home, "demo")
    stored = pl.read_parquet(layout.table("samples", "mvtec_loco"))
    assert all(p.startswith("data/mvtec_loco/") for p in stored["image_path"])
    assert all(m.startswith("data/") for ms in stored["mask_paths"] for m in ms)
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.copytree(loco_home, moved, symlinks=True)
    shutil.rmtree(loco_home / "demo")
    resolved = read_table(Layout.resolve(moved, "demo"), "samples", "mvtec_loco", made_by="")
    assert all(Path(p).is_file() for p in resolved["image_path"])
    assert all(p.startswith(str(moved)) for p in resolved["image_path"])
    # a table pointing outside the layout's roots is refused, never read
    for bad in ("data/../../etc/passwd", "/etc/passwd", "elsewhere/x.png"):
        hostile = stored.with_columns(pl.lit(bad).alias("image_path"))
        hostile.write_parquet(Layout.resolve(moved, "demo").table("samples", "mvtec_loco"))
        with pytest.raises(IadError, match="rebuild the table"):
            read_table(Layout.resolve(moved, "demo"), "samples", "mvtec_loco", made_by="")
