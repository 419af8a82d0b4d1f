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
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from eval.adapters import model_path, model_revision
from eval.backends import close_backend
from eval.crossdataset import binary_metrics, per_category, predictions_frame
from eval.errata import apply_errata
from eval.mmad_files import mmad_knowledge, mmad_templates
from eval.prompting import PromptSources
from eval.protocols import Protocol
from eval.records import ANSWERS_SCHEMA
from eval.reports import write_mmad_csv
from eval.runner import RunInfo, evaluate
from eval.scoring import score_mmad
from eval.store import AnswerStore
from eval.trained_size import size_warning
from eval.warehouse import Warehouse
from iad_pipeline import __version__
from iad_pipeline.errors import IadError
from iad_pipeline.fingerprint import checkpoint_fingerprint
from iad_pipeline.fsutil import write_text
from iad_pipeline.markdown import markdown_table
from iad_pipeline.paths import Layout
from iad_pipeline.stages import CROSS_DATASET_EVAL, read_table

MMAD_SETS = ("DS-MVTec", "MVTec-LOCO", "VisA", "GoodsAD")


def recipe_protocol_on(name: str, changes: dict, eval_set: str) -> tuple[str, dict]:
    """A recipe's protocol ``(name, changes)`` as asked on ``eval_set``: on a cross-dataset
    set, its prompts and answer format without MMAD's domain knowledge (which covers MMAD's
    categories only).

    >>> recipe_protocol_on("emit_think", {}, "mpdd"), recipe_protocol_on("emit_think", {}, "VisA")
    (('emit_think', {'knowledge': False}), ('emit_think', {}))
    """
    if eval_set not in MMAD_SETS and name != "mmad":
        changes = changes | {"knowledge": False}
    return name, changes


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


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation asks its questions: the protocol (default: the set's own), the
    backend (``transformers``, ``vllm``, ``openai``, ``ray`` with ``ray``'s Ray settings), the
    first ``limit`` questions only, questions per batch, progress bars."""

    protocol: Protocol | None = None
    backend: str = "transformers"
    limit: int | None = None
    batch_size: int = 8
    progress: bool = False
    ray: Mapping | None = None


@dataclass(frozen=True)
class _Answered:
    """What answering produced: the model folder, the checkpoint's content fingerprint, the
    answers, the run, the backend's load warnings and when answering started."""

    model: Path | str
    sha: str
    answers: pl.DataFrame
    run: RunInfo
    warnings: list[str]
    started: dt.datetime

    @property
    def run_id(self) -> str:
        return self.answers["run_id"][0] if self.answers.height else "empty"


def _backend(
    name: str, model: Path | str, batch_size: int, layout: Layout, ray: Mapping | None = None
):
    """The backend that answers: a local model folder, or a model name on an OpenAI server
    (an unknown ``name`` is :func:`~eval.backends.make_backend`'s error).

    ``ray`` holds the Ray settings of the ``ray`` backend (``address``, ``num_workers``,
    ``use_gpu``, ``resources_per_worker``): the transformers backend on Ray Data actors.
    """
    from eval.backends import make_backend

    local = {"model_path": model, "batch_size": batch_size}
    config = {
        "transformers": local,
        "ray": local | dict(ray or {}),
        "vllm": {"model_path": model},
        "openai": {"model": str(model), "cache_dir": layout.llm_cache},
    }
    return make_backend(name, **config.get(name, {}))


def _questions(layout: Layout, key: str) -> pl.DataFrame:
    return read_table(layout, "questions", key, made_by="question_bank")


def _rounded(table: pl.DataFrame) -> pl.DataFrame:
    """Accuracies to two decimals, for metadata tables people read."""
    return table.with_columns(pl.col(pl.Float64).round(2))


def _answer(
    questions: pl.DataFrame,
    checkpoint: Path | str,
    checkpoint_key: str,
    eval_set: str,
    layout: Layout,
    options: EvalOptions,
    **prompting,
) -> _Answered:
    """Answer with the checkpoint's model; resumable, one run per (checkpoint content, set).

    ``options.protocol`` is the resolved protocol (never ``None`` here).
    """
    started = dt.datetime.now(dt.UTC)
    backend, batch_size = options.backend, options.batch_size
    if backend == "openai":  # a model served elsewhere: its name is all there is
        sha, model = "", checkpoint
    else:
        sha = checkpoint_fingerprint(Path(checkpoint), layout.fingerprint_cache)
        model = model_path(Path(checkpoint), sha)
    answerer = _backend(backend, model, batch_size, layout, options.ray)
    # one run per (checkpoint content, evaluation set): its own id, store folder and rows; the
    # backend's own name (Ray's actors answer as "transformers": the same run either way)
    run = RunInfo(
        model=str(model),
        checkpoint=f"{checkpoint_key}/{eval_set}",
        backend=answerer.name,
        protocol=options.protocol,
        checkpoint_sha=sha,
        model_revision=None if backend == "openai" else model_revision(Path(model)),
    )
    store = AnswerStore(layout.answers)
    try:
        answers = evaluate(
            questions,
            answerer,
            store,
            run=run,
            batch_size=batch_size,
            progress=options.progress,
            sources=PromptSources(**prompting),
        )
    finally:
        close_backend(answerer)
    warnings = list(getattr(answerer, "load_warnings", []))
    if backend != "openai":
        resized = size_warning(
            Path(checkpoint),
            Path(model),
            options.protocol,
            questions["image_path"],
            prompting.get("image_root"),
        )
        warnings += [resized] if resized else []
    return _Answered(model, sha, answers, run, warnings, started)


def _run_row(
    answered: _Answered, eval_set: str, checkpoint_key: str, recipe: str, headline: float | None
) -> dict:
    """The warehouse's ``runs`` row of one evaluation."""
    run = answered.run
    record = run.protocol_record()
    return {
        "run_id": answered.run_id,
        "eval_set": eval_set,
        "checkpoint": checkpoint_key,
        "checkpoint_sha": answered.sha,
        "recipe": recipe,
        "model": str(answered.model),
        "protocol": run.protocol.name,
        "protocol_key": record["protocol_key"],
        "mmad_version": record["mmad_version"],
        "protocol_record": json.dumps(record, sort_keys=True),
        "backend": run.backend,
        "code_version": __version__,
        "started_at": answered.started,
        "finished_at": dt.datetime.now(dt.UTC),
        "n_questions": answered.answers.height,
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
    options: EvalOptions = EvalOptions(),
    questions: pl.DataFrame | None = None,
    name: str | None = None,
) -> Evaluation:
    """Answer MMAD's questions of one query set with a checkpoint and record the scores.

    ``questions`` replaces the layout's MMAD question bank (e.g. a control whose images were
    changed, or :mod:`eval.learning_set`); only its rows of ``eval_set`` are asked. ``name``
    (default ``eval_set``) is what the run is called: its ``eval_set`` in DuckDB, its report
    folder and its answers' run; a set of other questions needs its own name, or it would
    be read as (and resume from the answers of) the benchmark set.
    """
    from eval.figures import heatmap, type_bars
    from eval.published import as_compare, mmad_row
    from eval.reports import comparison_markdown, comparison_table

    if eval_set not in MMAD_SETS:
        msg = f"unknown MMAD set {eval_set!r}; valid: {', '.join(MMAD_SETS)}"
        raise IadError(msg)
    protocol = options.protocol or Protocol()
    if questions is None:
        questions = _questions(layout, "mmad")
    questions = questions.filter(pl.col("source") == eval_set)
    eval_set = name or eval_set
    if options.limit is not None:
        questions = questions.head(options.limit)
    root = layout.mmad_root()
    templates = mmad_templates(root / "mmad.json")
    if protocol.mmad_version == "corrected":
        corrected = apply_errata(questions, templates, root)
        questions, templates = corrected.questions, corrected.templates
    knowledge = mmad_knowledge(root / "domain_knowledge.json") if protocol.knowledge else None
    warehouse = Warehouse(layout.warehouse)  # an unusable results file fails before answering
    answered = _answer(
        questions,
        checkpoint,
        checkpoint_key,
        eval_set,
        layout,
        replace(options, protocol=protocol),
        templates=templates,
        knowledge=knowledge,
        image_root=root,
    )
    answers, run_id = answered.answers, answered.run_id
    scores = score_mmad(answers)
    by_type = _long_table(scores.table, run_id)
    by_category = scores.by_category.with_columns(pl.lit(run_id).alias("run_id"))
    row = _run_row(answered, eval_set, checkpoint_key, recipe, scores.headline)
    warehouse.record_run(row, answers, by_type, by_category)
    # the corrected MMAD's reports sit beside the original's, never over them
    folder = layout.report(checkpoint_key, _report_name(eval_set, protocol))
    paths = {"csv": write_mmad_csv(scores, folder / f"{eval_set}_accuracy.csv")}
    if by_category.height:
        # (a model whose every answer is unreadable, e.g. an untrained one asked for EMIT's
        # tags, has no per-category scores to draw: its run is recorded all the same)
        paths["heatmap"] = heatmap(
            by_category,
            folder / "heatmap.png",
            f"{checkpoint_key} on MMAD {eval_set} ({protocol.name})",
        )
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
        warnings=answered.warnings,
    )


def evaluate_cross_dataset(
    checkpoint: Path | str,
    eval_set: str,
    *,
    checkpoint_key: str,
    recipe: str,
    layout: Layout,
    options: EvalOptions = EvalOptions(),
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
    if options.limit is not None:
        questions = questions.head(options.limit)
    # AD-FM's protocol is 1-shot with the question's own reference image
    protocol = options.protocol or Protocol(shots=1)
    warehouse = Warehouse(layout.warehouse)  # an unusable results file fails before answering
    answered = _answer(
        questions,
        checkpoint,
        checkpoint_key,
        eval_set,
        layout,
        replace(options, protocol=protocol),
        templates=None,
        image_root=layout.data,
    )
    answers, run_id = answered.answers, answered.run_id
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
    row = _run_row(answered, eval_set, checkpoint_key, recipe, accuracy)
    warehouse.record_run(row, answers.select(list(ANSWERS_SCHEMA)), by_type, by_category)
    return Evaluation(
        row,
        answers,
        by_type,
        by_category,
        accuracy,
        {},
        markdown_table(_rounded(metrics)),
        warnings=answered.warnings,
    )


def evaluate_set(
    checkpoint: Path | str,
    eval_set: str,
    *,
    checkpoint_key: str,
    recipe: str,
    layout: Layout,
    options: EvalOptions = EvalOptions(),
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
    where = {"checkpoint_key": checkpoint_key, "recipe": recipe, "layout": layout}
    return run(checkpoint, eval_set, **where, options=options)
