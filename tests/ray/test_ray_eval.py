"""Evaluation on a real local Ray cluster: a Ray Data pipeline over 2 actors answers as the
in-process transformers backend does, resumes from the answer store, and scores the same."""

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from eval.backends import make_backend
from eval.backends.ray_backend import RayBackend
from eval.backends.transformers_backend import TransformersBackend
from eval.mmad_files import mmad_templates
from eval.prompting import PromptSources
from eval.protocols import Protocol
from eval.runner import RunInfo, evaluate
from eval.scoring import score_mmad
from eval.store import AnswerStore
from eval.warehouse import Warehouse
from iad_pipeline.questions.mmad_json import read_mmad_json
from iad_pipeline.synthetic import synthesize
from training.tiny_model import build_tiny_qwen25vl

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
SETTINGS = {"batch_size": 8, "max_new_tokens": 6}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "qwen25vl", seed=0)


@pytest.fixture(scope="module")
def mini_mmad(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mmad") / "ALL_DATA"
    synthesize("mmad", root, per_class=1, size=64)
    return root


@pytest.fixture(scope="module")
def questions(mini_mmad: Path) -> pl.DataFrame:
    table = read_mmad_json(mini_mmad / "mmad.json", mini_mmad)
    return table.filter(pl.col("source").is_in(["VisA", "MVTec-LOCO"]))


def run(questions, backend, store: AnswerStore, mini_mmad: Path) -> pl.DataFrame:
    info = RunInfo("tiny", "demo-4/VisA", backend.name, Protocol())
    return evaluate(
        questions,
        backend,
        store,
        run=info,
        sources=PromptSources(mmad_templates(mini_mmad / "mmad.json"), image_root=mini_mmad),
        batch_size=SETTINGS["batch_size"],
        progress=False,
    )


def comparable(answers: pl.DataFrame) -> pl.DataFrame:
    return answers.drop("latency_s").sort("question_id")


def test_ray_actors_answer_and_score_as_the_in_process_backend(
    ray_cluster, tiny_model, mini_mmad, questions, tmp_path
) -> None:
    local = TransformersBackend(tiny_model, device="cpu", **SETTINGS)
    expected = run(questions, local, AnswerStore(tmp_path / "local"), mini_mmad)

    ray = make_backend(
        "ray", model_path=tiny_model, address=ray_cluster.gcs, num_workers=2, **SETTINGS
    )
    assert isinstance(ray, RayBackend) and ray.name == local.name
    store = AnswerStore(tmp_path / "ray")
    # a first, interrupted evaluation answered part of the questions (one image's batch)
    first = questions.filter(pl.col("image_path") == questions["image_path"][0])
    run(first, ray, store, mini_mmad)
    info = RunInfo("tiny", "demo-4/VisA", ray.name, Protocol())
    rid = store.open_run(info.model, info.checkpoint, info.protocol_name, info.backend)
    assert store.answered(rid) == set(first["question_id"])
    shards = len(store.shards(rid))

    answers = run(questions, ray, store, mini_mmad)
    # the rest only was asked: one shard per remaining batch, nothing answered twice
    assert answers["question_id"].n_unique() == answers.height == questions.height
    assert len(store.shards(rid)) > shards
    # the same run id (Ray changes where the model runs, not what answers) and answers
    assert set(expected["run_id"]) == {rid}
    assert comparable(answers).equals(comparable(expected))
    assert run(questions, ray, store, mini_mmad).height == questions.height  # nothing left

    mine, theirs = score_mmad(answers), score_mmad(expected)
    assert mine.table.equals(theirs.table)
    assert mine.by_category.equals(theirs.by_category)
    # and the same DuckDB rows, but for the measured latencies
    tables = {}
    for name, frame, scores in (("local", expected, theirs), ("ray", answers, mine)):
        warehouse = Warehouse(tmp_path / f"{name}.duckdb")
        run_row = {"run_id": rid, "eval_set": "VisA", "backend": "transformers"}
        warehouse.record_run(run_row, frame, scores.by_type, scores.by_category)
        tables[name] = [
            warehouse.query(f"SELECT * EXCLUDE (latency_s) FROM {t} ORDER BY ALL")
            if t == "answers"
            else warehouse.query(f"SELECT * FROM {t} ORDER BY ALL")
            for t in ("answers", "scores_by_type", "scores_by_category")
        ]
    for local, ray_rows in zip(tables["local"], tables["ray"], strict=True):
        assert local.height > 0 and local.equals(ray_rows)

    # closing leaves the cluster: a driver still connected when its cluster stops ends its
    # process a minute later (it had failed this suite's exit after every test passed)
    import ray as ray_module

    assert ray_module.is_initialized()
    ray.close()
    assert not ray_module.is_initialized()


def test_a_bad_ray_address_is_one_line_naming_it(tiny_model) -> None:
    # in a fresh interpreter: this one may already be a driver of the test cluster
    code = (
        "import sys\n"
        "from eval.backends import BackendError\n"
        "from eval.backends.ray_backend import RayBackend\n"
        "try:\n"
        "    RayBackend(sys.argv[1], address='127.0.0.1:9')\n"
        "except BackendError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tiny_model)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    assert lines[0].startswith("ray address '127.0.0.1:9': cannot join a Ray cluster there")
