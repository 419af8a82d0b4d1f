"""``make demo``: run the pipeline's jobs on the demo profile, every partition.

Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (the Makefile sets it to
``$IAD_HOME/dagster``), so ``make ui`` shows them, with their metadata and checks, afterwards.
"""

from __future__ import annotations

import os
import sys

import dagster as dg
from rich.console import Console
from rich.table import Table

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.stages import TRAINING_SETS

# Wide enough for both summary tables when stdout is not a terminal (make, CI logs).
console = Console(width=max(Console().width, 120))
# Step-by-step events stay in the run's event log (see them in the UI); the terminal gets
# warnings and the summary tables.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DATASET_COLUMNS = (
    "run",
    "samples",
    "anomalous",
    "boxes",
    "knowledge",
    "text samples",
    "questions",
    "quarantine",
    "checks",
)


def _instance() -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _meta(result: dg.ExecuteInProcessResult, node: str) -> dict:
    mats = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mats[0].metadata.items()} if mats else {}


def _run(job: dg.JobDefinition, key: str, instance: dg.DagsterInstance):
    return job.execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET_LOGS
    )


def _summary_table(title: str, first: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    table.add_column(first, no_wrap=True)
    for column in columns:
        table.add_column(column)
    return table


def _cells(*values) -> list[str]:
    """Table cells: ``-`` where a run recorded no value."""
    return ["-" if v is None else str(v) for v in values]


def _partition(job: dg.JobDefinition, key: str, instance: dg.DagsterInstance, doing: str):
    """Run one partition of ``job`` under a spinner saying ``doing``: the result, its "run"
    and "checks" cells, and how many things failed (the run, each failed check)."""
    with console.status(doing):
        result = _run(job, key, instance)
    evals = result.get_asset_check_evaluations()
    passed = sum(e.passed for e in evals)
    failed = (not result.success) + (len(evals) - passed)
    return result, "ok" if result.success else "FAILED", f"{passed}/{len(evals)}", failed


def main() -> int:
    os.environ.setdefault("IAD_PROFILE", "demo")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    from iad_pipeline.definitions import defs

    failures = 0
    datasets = _summary_table(
        f"datasets on the {os.environ['IAD_PROFILE']} profile",
        "dataset",
        DATASET_COLUMNS,
    )
    recipes = _summary_table(
        "training sets",
        "recipe",
        ("run", "style", "train questions", "eval questions", "leaks", "checks"),
    )
    with _instance() as instance:
        job = defs.resolve_job_def("datasets")
        for key in DATASET_KEYS:
            result, run, checks, failed = _partition(
                job, key, instance, f"{key}: install, samples, annotations, knowledge, questions"
            )
            failures += failed
            s, a, k, t, q = (
                _meta(result, n)
                for n in (
                    "samples",
                    "annotations",
                    "domain_knowledge",
                    "text_samples",
                    "question_bank",
                )
            )
            rows = "dagster/row_count"
            quarantined = s.get("quarantine_rows", 0) + a.get("quarantine_rows", 0)
            figures = (s.get(rows), s.get("anomalous"), a.get("boxes"), k.get(rows), t.get(rows))
            datasets.add_row(key, run, *_cells(*figures, q.get(rows), quarantined), checks)
        console.print(datasets)
        job = defs.resolve_job_def("training_sets")
        for recipe in TRAINING_SETS:
            result, run, checks, failed = _partition(
                job, recipe, instance, f"training set {recipe}"
            )
            failures += failed
            meta = _meta(result, "training_set")
            leaks = next(
                (
                    e.metadata["leaks"].value
                    for e in result.get_asset_check_evaluations()
                    if e.check_name == "no_training_image_in_eval_sets"
                ),
                None,
            )
            figures = (meta.get("style"), meta.get("dagster/row_count"), meta.get("eval_questions"))
            recipes.add_row(recipe, run, *_cells(*figures, leaks), checks)
        console.print(recipes)
        job = defs.resolve_job_def("training")
        with console.status("training the demo recipe: SFT, then GRPO (tiny Qwen2.5-VL, CPU)"):
            result = _run(job, "demo", instance)
        failures += not result.success
        meta = _meta(result, "grpo_run")
        for stage in str(meta.get("stages", "")).split(", "):
            if not stage:
                continue
            figures = (
                f"loss {meta.get(f'{stage}/first_loss', float('nan')):.3f} -> "
                f"{meta.get(f'{stage}/final_loss', float('nan')):.3f}"
                if stage == "sft"
                else f"mean reward {meta.get(f'{stage}/first_mean_reward', float('nan')):.3f} -> "
                f"{meta.get(f'{stage}/final_mean_reward', float('nan')):.3f}, zero-variance "
                f"groups {meta.get(f'{stage}/mean_frac_zero_variance_groups', float('nan')):.2f}"
            )
            console.print(
                f"grpo_run[demo] stage {stage}: {'ok' if result.success else 'FAILED'}, steps "
                f"{meta.get(f'{stage}/steps', '-')}, {figures}, checkpoint "
                f"{meta.get(f'{stage}/checkpoint', '-')}",
                soft_wrap=True,
            )
        failures += _evaluate(defs, instance)
        failures += _learning("demo")
    return 1 if failures else 0


LEARNING_SET = "DS-MVTec"  # the MMAD query set of the per-type table (the assets' runs)
LEARNING_N = 400  # anomaly-detection questions of the held-out learning set


def _newest_per_stage(recipe: str, pairs) -> dict[str, tuple[str, object]]:
    """``{stage: (key, value)}`` of the highest step of each stage (base, sft, grpo) among
    ``(checkpoint key, value)`` pairs of ``recipe`` (keys ``<recipe>-<stage>-<step>``)."""
    latest: dict[str, tuple[int, str, object]] = {}
    for key, value in pairs:
        name, stage, step = [*key.rsplit("-", 2), "", ""][:3]
        ours = name == recipe and stage in ("base", "sft", "grpo") and step.isdigit()
        if ours and (stage not in latest or int(step) >= latest[stage][0]):
            latest[stage] = (int(step), key, value)
    return {stage: (key, value) for stage, (_, key, value) in latest.items()}


def _stage_checkpoints(recipe: str) -> dict[str, tuple[str, object]]:
    """``{stage: (partition key, folder)}`` of the newest complete checkpoint of each stage
    (base, sft, grpo) of ``recipe``."""
    from iad_pipeline.resources import IadConfig
    from training.checkpoints import complete_checkpoints

    return _newest_per_stage(recipe, complete_checkpoints(IadConfig().layout().runs).items())


def _learning_runs(recipe: str) -> dict[str, str]:
    """Every stage's newest checkpoint, and the image-ablation control of the last one, asked
    the held-out learning set (:mod:`eval.learning_set`) with the real evaluation code and
    the recipe's protocol; ``{stage or "ablation": run_id}``."""
    from assets.evaluation import checkpoint_protocol, recipe_protocol
    from eval.learning_set import (
        LEARNING_EVAL_SET,
        LEARNING_SOURCE,
        write_ablation,
        write_learning_set,
    )
    from eval.pipeline import EvalOptions, evaluate_mmad
    from eval.protocols import protocol_named
    from iad_pipeline.paths import Layout
    from iad_pipeline.resources import IadConfig

    layout = IadConfig().layout()
    stages = _stage_checkpoints(recipe)
    # the protocol the run folder records (every stage's checkpoints share it), as the assets
    first = next(iter(stages.values()), None)
    name, changes = checkpoint_protocol(first[1]) if first else recipe_protocol(recipe)
    protocol = protocol_named(name, **changes)
    options = EvalOptions(protocol=protocol)
    with console.status(f"held-out learning set: {LEARNING_N} anomaly-detection questions"):
        learning = write_learning_set(layout.root / "learning" / "data", n=LEARNING_N)
    runs: dict[str, str] = {}
    # the profile's layout with the data folder moved to the set: the same answers store,
    # warehouse and reports as the assets' runs, under the set's own eval_set name
    on_set = Layout(layout.home, layout.profile, data_override=learning.data)
    asked = [
        (stage, key, folder, on_set, learning.questions) for stage, (key, folder) in stages.items()
    ]
    if "grpo" in stages:
        key, folder = stages["grpo"]
        data = layout.root / "learning" / "ablation"
        questions = write_ablation(learning, data, protocol.template)
        ablated = Layout(layout.home, layout.profile, data_override=data)
        asked.append(("ablation", f"{key}-ablation", folder, ablated, questions))
    for stage, key, folder, where, questions in asked:
        with console.status(f"learning set: {key} ({questions.height} questions)"):
            result = evaluate_mmad(
                folder,
                LEARNING_SOURCE,
                checkpoint_key=key,
                recipe=recipe,
                layout=where,
                options=options,
                questions=questions,
                name=LEARNING_EVAL_SET,
            )
        runs[stage] = result.run["run_id"]
    return runs


def _latest_runs(warehouse, recipe: str) -> dict[str, str]:
    """``{stage: run_id}`` of the newest step of each stage (base, sft, grpo) evaluated on
    LEARNING_SET by the evaluation assets."""
    runs = warehouse.query(
        "SELECT run_id, checkpoint FROM runs WHERE recipe = $r AND eval_set = $e "
        "ORDER BY finished_at",
        {"r": recipe, "e": LEARNING_SET},
    )
    # ordered by finish time: of two runs of one checkpoint the later wins
    pairs = ((checkpoint, run_id) for run_id, checkpoint in runs.iter_rows())
    return {stage: run_id for stage, (_, run_id) in _newest_per_stage(recipe, pairs).items()}


def _cell(frame, question_type: str) -> str:
    """``accuracy [low-high]`` of one question type in an accuracy frame, else ``-``."""
    import polars as pl

    hit = None if frame is None else frame.filter(pl.col("question_type") == question_type)
    if hit is None or hit.is_empty():
        return "-"
    r = hit.row(0, named=True)
    return f"{r['accuracy']:.1f} [{r['ci_low']:.0f}-{r['ci_high']:.0f}]"


LEARNING_COLUMNS = (
    ("base", "base"),
    ("sft", "SFT"),
    ("grpo", "GRPO"),
    ("ablation", "GRPO, no image"),
)


def _accuracy_table(warehouse, ids: dict[str, str], title: str):
    """A rich table of per-type accuracy (with the finding row) of each run in ``ids``,
    beside n, chance and the majority-letter baseline; and ``{type: (chance, majority)}``."""
    import polars as pl

    from eval.baseline import accuracy_by_type, finding_accuracy

    frames = {}
    for stage, run_id in ids.items():
        answers = warehouse.query(
            "SELECT question_type, correct_answer, gpt_answer, image, response FROM answers "
            "WHERE run_id = $r",
            {"r": run_id},
        )
        frames[stage] = pl.concat(
            [accuracy_by_type(answers), finding_accuracy(answers)], how="diagonal_relaxed"
        )
    columns = [(stage, label) for stage, label in LEARNING_COLUMNS if stage in ids]
    table = Table(title=title)
    for column in ("question type", "n", "chance", "majority", *(c for _, c in columns)):
        table.add_column(column)
    baselines = {}
    first = frames.get("base", next(iter(frames.values()), None))
    for row in [] if first is None else first.iter_rows(named=True):
        cells = [_cell(frames.get(stage), row["question_type"]) for stage, _ in columns]
        table.add_row(
            row["question_type"],
            str(row["n"]),
            f"{row['chance']:.0f}",
            f"{row['majority']:.1f}",
            *cells,
        )
        baselines[row["question_type"]] = (row["chance"], row["majority"])
    return table, baselines


def _learning(recipe: str) -> int:
    """base -> SFT -> GRPO accuracy on the held-out learning set (with the image-ablation
    control), then per question type on LEARNING_SET (the assets' runs), each beside chance
    and the majority-letter baseline, with n and 95% intervals; writes reports/learning.json."""
    from eval.learning_set import LEARNING_EVAL_SET
    from eval.warehouse import Warehouse
    from iad_pipeline.environment import describe, environment
    from iad_pipeline.fsutil import write_json
    from iad_pipeline.resources import IadConfig

    layout = IadConfig().layout()
    env = environment()
    ids = _learning_runs(recipe)
    path = layout.warehouse
    if "base" not in ids or not path.is_file():
        return 1
    warehouse = Warehouse(path)
    table, baselines = _accuracy_table(
        warehouse,
        ids,
        f"learning: {recipe} on {LEARNING_EVAL_SET}, held out, half defect-free "
        "(accuracy %, 95% interval)",
    )
    console.print(table)
    per_type = _latest_runs(warehouse, recipe)
    if per_type:
        table, _ = _accuracy_table(
            warehouse, per_type, f"{recipe} on MMAD {LEARNING_SET} per question type (assets)"
        )
        console.print(table)
    report = {
        "eval_set": LEARNING_EVAL_SET,
        **{stage: ids.get(stage) for stage, _ in LEARNING_COLUMNS},
        "chance": {t: c for t, (c, _) in baselines.items()},
        "majority": {t: m for t, (_, m) in baselines.items()},
        "per_type": {"eval_set": LEARNING_SET, **per_type},
        # the learning-set accuracies depend on the machine's kernels and libraries
        "environment": env,
    }
    out = write_json(layout.root / "reports" / "learning.json", report)
    console.print(f"measured on {describe(env)}")
    console.print(f"wrote {out} (run_ids of the answers in {path})")
    return 0


def _evaluate(defs: dg.Definitions, instance: dg.DagsterInstance) -> int:
    """Run the checkpoint sensor once, as the daemon would, and execute what it requests."""
    from iad_pipeline.definitions import daemon_run_tags, tick_sensor

    # recorded in the instance as the daemon records a tick, so `make ui` has nothing to redo
    requests, skip = tick_sensor(instance, "checkpoint_sensor")
    if skip:
        console.print(f"checkpoint sensor: {skip}")
    failures = 0
    for request in requests:
        job = defs.resolve_job_def(request.job_name)
        with console.status(f"{request.job_name} {request.partition_key}"):
            res = job.execute_in_process(
                partition_key=request.partition_key,
                instance=instance,
                raise_on_error=False,
                run_config=QUIET_LOGS,
                tags=daemon_run_tags(request),
            )
        failures += not res.success
    _print_leaderboard()
    return failures


def _print_leaderboard() -> None:
    from eval.warehouse import Warehouse
    from iad_pipeline.resources import IadConfig

    path = IadConfig().layout().warehouse
    if not path.is_file():
        return
    board = Warehouse(path).query(
        "SELECT eval_set, checkpoint, protocol, round(headline, 2) AS headline, n_questions "
        "FROM runs ORDER BY eval_set, checkpoint"
    )
    table = Table(title=f"evaluations (DuckDB {path})")
    for column in board.columns:
        table.add_column(column)
    for row in board.iter_rows():
        table.add_row(*(str(v) for v in row))
    console.print(table)
    console.print(
        "The tiny model starts from random weights; read each accuracy against chance, the "
        "majority-letter baseline and its interval. Open the UI with: make ui"
    )


if __name__ == "__main__":
    sys.exit(main())
