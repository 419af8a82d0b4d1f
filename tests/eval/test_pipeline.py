"""evaluate_mmad keyed by checkpoint content; answering locked per run across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from eval import pipeline
from eval.pipeline import EvalOptions, evaluate_mmad
from eval.warehouse import Warehouse, WarehouseError
from iad_pipeline.fingerprint import checkpoint_fingerprint, file_sha256
from iad_pipeline.paths import Layout
from iad_pipeline.questions.mmad_json import read_mmad_json


@pytest.fixture
def layout(tmp_path: Path, mini_mmad: Path) -> dict[str, Path]:
    """A profile root with the mini MMAD as data/mmad and its question table."""
    root = tmp_path / "profile"
    (root / "data").mkdir(parents=True)
    (root / "data" / "mmad").symlink_to(mini_mmad)
    tables = root / "tables"
    (tables / "questions").mkdir(parents=True)
    data = root / "data" / "mmad"
    read_mmad_json(data / "mmad.json", data).write_parquet(tables / "questions" / "mmad.parquet")
    checkpoint = root / "runs" / "demo" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"old weights" * 1000)
    (checkpoint / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    return {
        "root": root,
        "tables": tables,
        "checkpoint": checkpoint,
        "layout": Layout(root, "real"),
    }


def _evaluate(layout: dict[str, Path], monkeypatch, scripted, **named) -> list[str]:
    """Evaluate checkpoint-4 on VisA with a scripted backend; the question ids it was asked
    (``named``: evaluate_mmad's ``name``)."""
    backend = scripted(name="transformers")
    monkeypatch.setattr(
        pipeline, "_backend", lambda name, path, batch_size, layout, ray=None: backend
    )
    evaluate_mmad(
        layout["checkpoint"],
        "VisA",
        checkpoint_key="demo-4",
        recipe="demo",
        layout=layout["layout"],
        **named,
    )
    return backend.asked


def test_an_evaluation_releases_its_backend_also_when_interrupted(
    layout, monkeypatch, scripted
) -> None:
    # a backend holds processes or connections (vLLM's replicas, a Ray driver's link to its
    # cluster): every evaluation closes the one it built, once, also when a batch fails
    built = []

    def build(name, path, batch_size, layout, ray=None):
        built.append(scripted(name="transformers", fail_after=None if built else 1))
        return built[-1]

    monkeypatch.setattr(pipeline, "_backend", build)
    kwargs = {
        "checkpoint_key": "demo-4",
        "recipe": "demo",
        "layout": layout["layout"],
        "options": EvalOptions(batch_size=1),
    }
    with pytest.raises(RuntimeError, match="killed after 1 batches"):
        evaluate_mmad(layout["checkpoint"], "VisA", **kwargs)
    evaluate_mmad(layout["checkpoint"], "VisA", **kwargs)
    assert [b.closed for b in built] == [1, 1]
    assert len(built[0].asked) == 1 and built[1].asked  # the rest asked by the second


def test_a_retrained_checkpoint_is_asked_again_and_recorded_beside_the_old(
    layout, monkeypatch, scripted
) -> None:
    first = _evaluate(layout, monkeypatch, scripted)
    assert first  # every VisA question asked once
    old_sha = checkpoint_fingerprint(layout["checkpoint"])
    # unchanged content (training state rewritten, files touched): nothing is asked again
    (layout["checkpoint"] / "trainer_state.json").write_text('{"global_step": 4}')
    assert _evaluate(layout, monkeypatch, scripted) == []
    # the attack: re-train into the same name. On main, 0 questions were asked and the old
    # weights' answers were recorded as the new checkpoint's scores.
    (layout["checkpoint"] / "model.safetensors").write_bytes(b"new weights" * 1000)
    again = _evaluate(layout, monkeypatch, scripted)
    assert sorted(again) == sorted(first)
    new_sha = checkpoint_fingerprint(layout["checkpoint"])
    runs = Warehouse(layout["root"] / "results.duckdb").query(
        "SELECT checkpoint, checkpoint_sha, n_questions FROM runs ORDER BY started_at"
    )
    assert runs.rows() == [
        ("demo-4", old_sha, len(first)),
        ("demo-4", new_sha, len(first)),
    ]
    board = Warehouse(layout["root"] / "results.duckdb").query(
        "SELECT count(*) AS n FROM answers a JOIN runs r USING (run_id) WHERE r.checkpoint_sha = ?",
        [new_sha],
    )
    assert board["n"][0] == len(first)


def test_the_fingerprint_cache_is_keyed_by_file_stat(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"a" * 100)
    first = file_sha256(path, cache)
    assert len(list(cache.glob("*.json"))) == 1
    path.write_bytes(b"b" * 100)  # same size, new content
    assert file_sha256(path, cache) != first


CONCURRENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import polars as pl
    from eval.mmad_files import mmad_templates
    from eval.prompting import PromptSources
    from eval.protocols import Protocol
    from eval.runner import RunInfo, evaluate
    from eval.store import AnswerStore

    questions, root, store, log = sys.argv[1:5]

    class Slow:
        name = "slow"
        model = "slow-model"
        def answer(self, prompts, max_new_tokens=None):
            with open(log, "a") as fh:
                fh.writelines(f"{p.question_id}\\n" for p in prompts)
            time.sleep(0.05)
            return ["A" for _ in prompts]

    run = RunInfo(model="slow-model", checkpoint="c", backend="slow", protocol=Protocol())
    print("started", flush=True)
    out = evaluate(pl.read_parquet(questions), Slow(), AnswerStore(store), run=run,
        sources=PromptSources(mmad_templates(Path(root) / "mmad.json"), image_root=root),
        batch_size=4, progress=False)
    print(out.height, flush=True)
    """
)


def test_the_same_evaluation_launched_twice_asks_each_question_once(
    tmp_path: Path, mini_mmad: Path, mmad_questions: pl.DataFrame
) -> None:
    questions = tmp_path / "q.parquet"
    mmad_questions.head(40).write_parquet(questions)
    log = tmp_path / "asked.log"
    args = [str(questions), str(mini_mmad), str(tmp_path / "answers"), str(log)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert [out.split()[-1] for out, _ in outs] == ["40", "40"]
    asked = log.read_text().split()
    assert len(asked) == len(set(asked)) == 40  # on main: up to 80, each asked twice


def test_a_corrupt_results_file_fails_before_any_question_with_one_line(
    layout, monkeypatch, scripted
) -> None:
    results = layout["root"] / "results.duckdb"
    results.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(WarehouseError) as info:
        _evaluate(layout, monkeypatch, scripted)
    assert str(info.value).startswith(f"{results}: not a usable DuckDB file")
    assert "\n" not in str(info.value)
    assert not (layout["root"] / "answers").exists()  # no question was asked


def test_a_module_runs_checkpoint_without_its_weights_warns_in_the_result(
    layout, tiny_model_dir: Path
) -> None:
    import shutil

    from iad_pipeline.models.emit import EmitModuleSettings, attach_emit_module, save_emit_module
    from iad_pipeline.models.processors import load_model_and_processor

    run = layout["checkpoint"].parent
    shutil.rmtree(layout["checkpoint"])
    shutil.copytree(tiny_model_dir, layout["checkpoint"])  # checkpoint-4: no module weights
    sibling = run / "checkpoint-2"  # an earlier checkpoint of the same run had the module
    shutil.copytree(tiny_model_dir, sibling)
    model, processor = load_model_and_processor(sibling)
    settings = EmitModuleSettings(layers=(1, 2), window=1, soft_prompt_tokens=2, heatmap_grid=2)
    attach_emit_module(model, settings, processor.tokenizer)
    save_emit_module(model, sibling)
    result = evaluate_mmad(
        layout["checkpoint"],
        "VisA",
        checkpoint_key="demo-4",
        recipe="demo",
        layout=layout["layout"],
        options=EvalOptions(limit=2),
    )
    assert result.answers.height == 2
    assert len(result.warnings) == 1 and "without EMIT's hints" in result.warnings[0]


def test_a_run_whose_every_answer_is_unreadable_is_recorded_without_a_heatmap(
    layout, monkeypatch, scripted
) -> None:
    """An untrained model asked for EMIT's tags answers nothing readable: the evaluation is
    still recorded (accuracy 0), with no per-category heat map to draw."""
    from eval.protocols import protocol_named

    backend = scripted(lambda p: "zq zq zq", name="transformers")
    monkeypatch.setattr(
        pipeline, "_backend", lambda name, path, batch_size, layout, ray=None: backend
    )
    result = evaluate_mmad(
        layout["checkpoint"],
        "VisA",
        checkpoint_key="demo-4",
        recipe="demo",
        layout=layout["layout"],
        options=EvalOptions(protocol=protocol_named("emit_think", knowledge=False)),
    )
    assert result.answers.height > 0 and result.answers["parsed_think"].is_null().all()
    assert "heatmap" not in result.paths and result.paths["csv"].is_file()
    runs = Warehouse(layout["layout"].warehouse).query("SELECT n_questions FROM runs")
    assert runs["n_questions"].to_list() == [result.answers.height]


def test_a_named_set_of_other_questions_is_its_own_run(layout, monkeypatch, scripted) -> None:
    """The demo's learning set reuses MMAD's paths for other images: asked under its own
    name, it never resumes from the benchmark run's answers nor mixes with its rows."""
    first = _evaluate(layout, monkeypatch, scripted)
    again = _evaluate(layout, monkeypatch, scripted, name="VisA-learning")
    assert sorted(again) == sorted(first)
    runs = Warehouse(layout["root"] / "results.duckdb").query(
        "SELECT eval_set, run_id FROM runs ORDER BY started_at"
    )
    assert runs["eval_set"].to_list() == ["VisA", "VisA-learning"]
    assert runs["run_id"].n_unique() == 2
    assert (
        layout["layout"].report("demo-4", "VisA-learning") / "VisA-learning_accuracy.csv"
    ).is_file()


def test_a_checkpoint_asked_at_another_image_size_than_it_trained_at_warns(
    layout, monkeypatch, scripted
) -> None:
    """The run folder records the pixel bounds its training resized images within; a
    protocol that resizes the set's query images otherwise says so in the result (the demo
    once scored 53.8 % against 73.2 % for this alone); matching bounds, or a run folder
    that records none, say nothing."""
    import json

    from eval.protocols import protocol_named

    backend = scripted(name="transformers")
    monkeypatch.setattr(
        pipeline, "_backend", lambda name, path, batch_size, layout, ray=None: backend
    )
    run = layout["checkpoint"].parent

    def warnings(protocol):
        return evaluate_mmad(
            layout["checkpoint"],
            "VisA",
            checkpoint_key="demo-4",
            recipe="demo",
            layout=layout["layout"],
            options=EvalOptions(protocol=protocol),
        ).warnings

    mmad = protocol_named("mmad")
    assert warnings(mmad) == []  # no RUN.json: nothing says how it trained
    (run / "RUN.json").write_text(json.dumps({"recipe": "demo", "trained_pixels": [3136, 3136]}))
    (found,) = warnings(mmad)
    n = layout["tables"].joinpath("questions", "mmad.parquet")
    images = pl.read_parquet(n).filter(pl.col("source") == "VisA")["image_path"].n_unique()
    assert found.startswith(f"{images} of {images} query images are shown at another size")
    assert "trained within 3136-3136 pixels" in found and mmad.name in found
    same = protocol_named("mmad", min_pixels=3136, max_pixels=3136)
    assert warnings(same) == []
    (layout["checkpoint"] / "config.json").write_text('{"model_type": "internvl"}')
    assert warnings(mmad) == []  # InternVL tiles images itself: the bounds do not apply
