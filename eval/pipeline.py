"""Evaluating a checkpoint end to end: answer, score, store in DuckDB, draw the reports.

The Dagster assets ``mmad_eval`` and ``cross_dataset_eval`` and the ``iad eval`` command call
these functions (:func:`evaluate_set` picks one by evaluation set); so can a script. Every
path (questions, answer store, warehouse, reports) comes from the
:class:`~iad_pipeline.paths.Layout`. Answers are appended to a resumable store first, so an
interrupted evaluation restarts where it stopped; the warehouse receives each evaluation
whole (one parquet generation, renamed into place).

Every evaluation is keyed by the checkpoint's content fingerprint
(:func:`iad_pipeline.fingerprint.checkpoint_fingerprint`) as well as its name and protocol: a
checkpoint re-trained under the same name is a new run that asks every question again and gets
its own rows (``runs.checkpoint_sha``); an unchanged checkpoint is never asked again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from eval.crossdataset import binary_metrics, per_category, predictions_frame
from eval.errata import apply_errata
from eval.protocols import Protocol, mmad_knowledge, mmad_templates
from eval.records import ANSWERS_SCHEMA
from eval.runner import RunInfo, evaluate
from eval.scoring import score_mmad, write_mmad_csv
from eval.store import AnswerStore
from eval.warehouse import Warehouse
from iad_pipeline import __version__
from iad_pipeline.datasets.checks import markdown_table
from iad_pipeline.errors import IadError
from iad_pipeline.fingerprint import checkpoint_fingerprint
from iad_pipeline.fsutil import write_text
from iad_pipeline.paths import Layout
from iad_pipeline.stages import CROSS_DATASET_EVAL

MMAD_SETS = ("DS-MVTec", "MVTec-LOCO", "VisA", "GoodsAD")


@dataclass
class Evaluation:
    """What one evaluation produced (for asset metadata and the CLI)."""

    run: dict
    answers: pl.DataFrame
    by_type: pl.DataFrame
    by_category: pl.DataFrame
    headline: float | None
    paths: dict[str, Path] = field(default_factory=dict)
    table_markdown: str = ""
    # what the backend reported while loading the model (e.g. a checkpoint of a run that
    # used EMIT's module, without its weights: evaluated as the plain model)
    warnings: list[str] = field(default_factory=list)


def model_path(checkpoint: Path, checkpoint_sha: str = "") -> Path:
    """A loadable model folder for a checkpoint; LoRA adapters are merged once, beside it.

    The merged folder's name carries the checkpoint's content fingerprint (``checkpoint_sha``,
    else a digest of the adapter files), so an adapter re-trained under the same name is
    merged again instead of reusing the old merge.
    """
    from eval.adapters import merged_model_dir

    return merged_model_dir(checkpoint, checkpoint_sha[:16] or None)


def model_revision(path: Path) -> str | None:
    """A short content hash of a model folder: its config and its weight files' names and
    sizes (hashing gigabytes of weights per evaluation would cost more than the answers).

    A hub snapshot folder (``.../snapshots/<commit>``) is named by its commit instead.
    """
    if path.parent.name == "snapshots" and len(path.name) == 40:
        return path.name
    config = path / "config.json"
    if not config.is_file():
        return None
    digest = hashlib.sha256(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:12]


BACKEND_NAMES = ("transformers", "vllm", "openai", "ray")


def _backend(
    name: str, model: Path | str, batch_size: int, layout: Layout, ray: Mapping | None = None
):
    """The backend that answers: a local model folder, or a model name on an OpenAI server.

    ``ray`` holds the Ray settings of the ``ray`` backend (``address``, ``num_workers``,
    ``use_gpu``, ``resources_per_worker``): the transformers backend on Ray Data actors.
    """
    from eval.backends import make_backend

    if name == "transformers":
        return make_backend("transformers", model_path=model, batch_size=batch_size)
    if name == "ray":
        return make_backend("ray", model_path=model, batch_size=batch_size, **(ray or {}))
    if name == "vllm":
        return make_backend("vllm", model_path=model)
    if name == "openai":
        return make_backend("openai", model=str(model), cache_dir=layout.llm_cache)
    msg = f"unknown backend {name!r}; valid: {', '.join(BACKEND_NAMES)}"
    raise IadError(msg)


def _questions(layout: Layout, key: str) -> pl.DataFrame:
    from iad_pipeline.stages import read_table

    return read_table(layout, "questions", key, made_by="question_bank")


def _rounded(table: pl.DataFrame) -> pl.DataFrame:
    """Accuracies to two decimals, for metadata tables people read."""
    return table.with_columns(pl.col(pl.Float64).round(2))


def _answer(
    questions: pl.DataFrame,
    checkpoint: Path | str,
    checkpoint_key: str,
    eval_set: str,
    protocol: Protocol,
    layout: Layout,
    backend: str,
    batch_size: int,
    progress: bool,
    ray: Mapping | None = None,
    **prompting,
) -> tuple[Path | str, str, pl.DataFrame, RunInfo, list[str]]:
    """Answer with the checkpoint's model; resumable, one run per (checkpoint content, set).

    Returns the model folder, the checkpoint's content fingerprint, the answers, the run and
    the backend's load warnings.
    """
    if backend == "openai":  # a model served elsewhere: its name is all there is
        sha, model = "", checkpoint
    else:
        sha = checkpoint_fingerprint(Path(checkpoint), layout.fingerprint_cache)
        model = model_path(Path(checkpoint), sha)
    answerer = _backend(backend, model, batch_size, layout, ray)
    # one run per (checkpoint content, evaluation set): its own id, store folder and rows; the
    # backend's own name (Ray's actors answer as "transformers": the same run either way)
    run = RunInfo(
        model=str(model),
        checkpoint=f"{checkpoint_key}/{eval_set}",
        backend=answerer.name,
        protocol=protocol,
        checkpoint_sha=sha,
        model_revision=None if backend == "openai" else model_revision(Path(model)),
    )
    store = AnswerStore(layout.answers)
    answers = evaluate(
        questions,
        answerer,
        store,
        run=run,
        batch_size=batch_size,
        progress=progress,
        **prompting,
    )
    return model, sha, answers, run, list(getattr(answerer, "load_warnings", []))


def _run_row(
    eval_set: str,
    checkpoint_key: str,
    checkpoint_sha: str,
    recipe: str,
    model: str,
    run: RunInfo,
    run_id: str,
    started: dt.datetime,
    n: int,
    headline: float | None,
) -> dict:
    record = run.protocol_record()
    return {
        "run_id": run_id,
        "eval_set": eval_set,
        "checkpoint": checkpoint_key,
        "checkpoint_sha": checkpoint_sha,
        "recipe": recipe,
        "model": model,
        "protocol": run.protocol.name,
        "protocol_key": record["protocol_key"],
        "mmad_version": record["mmad_version"],
        "protocol_record": json.dumps(record, sort_keys=True),
        "backend": run.backend,
        "code_version": __version__,
        "started_at": started,
        "finished_at": dt.datetime.now(dt.UTC),
        "n_questions": n,
        "headline": headline,
    }


def _long_table(table: pl.DataFrame, run_id: str) -> pl.DataFrame:
    """MMAD's wide table (datasets x types, with Average) as (run_id, dataset, type, acc)."""
    return (
        table.unpivot(index="dataset", variable_name="type", value_name="accuracy")
        .with_columns(pl.lit(run_id).alias("run_id"), pl.lit(None, pl.Int64).alias("n"))
        .select("run_id", "dataset", "type", "accuracy", "n")
    )


def _report_name(eval_set: str, protocol: Protocol) -> str:
    """The report folder of a set: ``VisA``, or ``VisA+mmad_corrected`` for the errata."""
    return eval_set if protocol.mmad_version == "original" else f"{eval_set}+mmad_corrected"


def evaluate_mmad(
    checkpoint: Path | str,
    eval_set: str,
    *,
    checkpoint_key: str,
    recipe: str,
    layout: Layout,
    protocol: Protocol | None = None,
    backend: str = "transformers",
    limit: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
    ray: Mapping | None = None,
    questions: pl.DataFrame | None = None,
) -> Evaluation:
    """Answer MMAD's questions of one query set with a checkpoint and record the scores.

    ``questions`` replaces the layout's MMAD question bank (e.g. a control whose images were
    changed); only its rows of ``eval_set`` are asked.
    """
    from eval.published import as_compare, mmad_row
    from eval.reports import comparison_markdown, comparison_table, heatmap, type_bars

    if eval_set not in MMAD_SETS:
        msg = f"unknown MMAD set {eval_set!r}; valid: {', '.join(MMAD_SETS)}"
        raise IadError(msg)
    protocol = protocol or Protocol()
    if questions is None:
        questions = _questions(layout, "mmad")
    questions = questions.filter(pl.col("source") == eval_set)
    if limit is not None:
        questions = questions.head(limit)
    root = layout.mmad_root()
    templates = mmad_templates(root / "mmad.json")
    if protocol.mmad_version == "corrected":
        corrected = apply_errata(questions, templates, root)
        questions, templates = corrected.questions, corrected.templates
    knowledge = mmad_knowledge(root / "domain_knowledge.json") if protocol.knowledge else None
    warehouse = Warehouse(layout.warehouse)  # an unusable results file fails before answering
    started = dt.datetime.now(dt.UTC)
    model, sha, answers, run, warnings = _answer(
        questions,
        checkpoint,
        checkpoint_key,
        eval_set,
        protocol,
        layout,
        backend,
        batch_size,
        progress,
        ray,
        templates=templates,
        knowledge=knowledge,
        image_root=root,
    )
    scores = score_mmad(answers)
    run_id = answers["run_id"][0] if answers.height else "empty"
    by_type = _long_table(scores.table, run_id)
    by_category = scores.by_category.with_columns(pl.lit(run_id).alias("run_id"))
    row = _run_row(
        eval_set,
        checkpoint_key,
        sha,
        recipe,
        str(model),
        run,
        run_id,
        started,
        answers.height,
        scores.headline,
    )
    warehouse.record_run(row, answers, by_type, by_category)
    # the corrected MMAD's reports sit beside the original's, never over them
    folder = layout.report(checkpoint_key, _report_name(eval_set, protocol))
    paths = {
        "csv": write_mmad_csv(scores, folder / f"{eval_set}_accuracy.csv"),
        "heatmap": heatmap(
            by_category,
            folder / "heatmap.png",
            f"{checkpoint_key} on MMAD {eval_set} ({protocol.name})",
        ),
    }
    # MMAD's Qwen2.5-VL-7B 1-shot row: the base model the papers fine-tune
    paths["bars"] = type_bars(
        by_type,
        folder / "types.png",
        f"{checkpoint_key} on MMAD {eval_set} ({protocol.mmad_version})",
        compare=as_compare([mmad_row("Qwen2.5-VL-7B")]),
        ours_label=checkpoint_key,
    )
    ours = {t: v for t, v in zip(scores.table.columns[1:], scores.table.row(-1)[1:], strict=True)}
    markdown = comparison_markdown(comparison_table(ours, f"{checkpoint_key} ({eval_set})"))
    paths["comparison"] = write_text(folder / "comparison.md", markdown + "\n")
    return Evaluation(
        row,
        answers,
        by_type,
        by_category,
        scores.headline,
        paths,
        markdown_table(_rounded(scores.table), max_rows=50),
        warnings=warnings,
    )


def evaluate_cross_dataset(
    checkpoint: Path | str,
    eval_set: str,
    *,
    checkpoint_key: str,
    recipe: str,
    layout: Layout,
    protocol: Protocol | None = None,
    backend: str = "transformers",
    limit: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
    ray: Mapping | None = None,
) -> Evaluation:
    """AD-FM's cross-dataset protocol: binary anomaly questions on a test split, with one
    normal reference image (1-shot), scored as accuracy and F1-macro (LR-IAD's table too).

    Answers are read by the shared parser (:mod:`iad_pipeline.answers`, the protocol's
    answer rule) and counted exactly (:func:`~eval.crossdataset.predictions_frame`); an
    unreadable answer counts as wrong.
    """
    if eval_set not in CROSS_DATASET_EVAL:
        msg = f"unknown cross-dataset set {eval_set!r}; valid: {', '.join(CROSS_DATASET_EVAL)}"
        raise IadError(msg)
    questions = _questions(layout, eval_set).filter(
        (pl.col("style") == "emit")
        & (pl.col("task") == "anomaly_detection")
        & pl.col("sample_id").str.contains("/test/")
        & pl.col("reference_image").is_not_null()
    )
    if limit is not None:
        questions = questions.head(limit)
    # AD-FM's protocol is 1-shot with the question's own reference image
    protocol = protocol or Protocol(shots=1)
    warehouse = Warehouse(layout.warehouse)  # an unusable results file fails before answering
    started = dt.datetime.now(dt.UTC)
    model, sha, answers, run, warnings = _answer(
        questions,
        checkpoint,
        checkpoint_key,
        eval_set,
        protocol,
        layout,
        backend,
        batch_size,
        progress,
        ray,
        templates=None,
        image_root=layout.data,
    )
    run_id = answers["run_id"][0] if answers.height else "empty"
    # the letters come from the shared parser (the protocol's rule), the truth from the
    # question's own answer; counts are exact, percentages derive from them
    frame = predictions_frame(answers, questions, eval_set, protocol.answer_rule)
    metrics = binary_metrics(frame) if frame.height else pl.DataFrame()
    cats = per_category(frame) if frame.height else pl.DataFrame()
    accuracy = float(metrics["accuracy"][0]) if metrics.height else None
    by_type = pl.DataFrame(
        {
            "run_id": [run_id, run_id],
            "dataset": [eval_set, eval_set],
            "type": ["Anomaly Detection", "F1-macro"],
            "accuracy": [accuracy, float(metrics["f1_macro"][0]) if metrics.height else None],
            "n": [frame.height, frame.height],
        }
    )
    by_category = (
        cats.select(
            pl.lit(run_id).alias("run_id"),
            pl.lit(eval_set).alias("dataset"),
            "category",
            pl.lit("Anomaly Detection").alias("type"),
            "correct",
            pl.col("n").alias("total"),
            "accuracy",
        )
        if cats.height
        else pl.DataFrame()
    )
    row = _run_row(
        eval_set,
        checkpoint_key,
        sha,
        recipe,
        str(model),
        run,
        run_id,
        started,
        answers.height,
        accuracy,
    )
    warehouse.record_run(row, answers.select(list(ANSWERS_SCHEMA)), by_type, by_category)
    return Evaluation(
        row,
        answers,
        by_type,
        by_category,
        accuracy,
        {},
        markdown_table(_rounded(metrics)),
        warnings=warnings,
    )


def evaluate_set(
    checkpoint: Path | str,
    eval_set: str,
    *,
    checkpoint_key: str,
    recipe: str,
    layout: Layout,
    **options,
) -> Evaluation:
    """Evaluate on an MMAD query set or a cross-dataset test set, whichever ``eval_set`` is."""
    if eval_set in MMAD_SETS:
        run = evaluate_mmad
    elif eval_set in CROSS_DATASET_EVAL:
        run = evaluate_cross_dataset
    else:
        msg = (
            f"unknown evaluation set {eval_set!r}; MMAD sets: {', '.join(MMAD_SETS)}; "
            f"cross-dataset sets: {', '.join(CROSS_DATASET_EVAL)}"
        )
        raise IadError(msg)
    return run(
        checkpoint, eval_set, checkpoint_key=checkpoint_key, recipe=recipe, layout=layout, **options
    )
