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


def _instance() -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _meta(result: dg.ExecuteInProcessResult, node: str) -> dict:
    mats = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mats[0].metadata.items()} if mats else {}


def _checks(result: dg.ExecuteInProcessResult) -> tuple[int, int]:
    evals = result.get_asset_check_evaluations()
    return sum(e.passed for e in evals), len(evals)


def _run(job: dg.JobDefinition, key: str, instance: dg.DagsterInstance):
    return job.execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET_LOGS
    )


def main() -> int:
    os.environ.setdefault("IAD_PROFILE", "demo")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    from iad_pipeline.definitions import defs

    failures = 0
    datasets = Table(title=f"datasets on the {os.environ['IAD_PROFILE']} profile")
    datasets.add_column("dataset", no_wrap=True)
    for column in (
        "run",
        "samples",
        "anomalous",
        "boxes",
        "knowledge",
        "text samples",
        "questions",
        "quarantine",
        "checks",
    ):
        datasets.add_column(column)
    recipes = Table(title="training sets")
    recipes.add_column("recipe", no_wrap=True)
    for column in ("run", "style", "train questions", "eval questions", "leaks", "checks"):
        recipes.add_column(column)
    with _instance() as instance:
        job = defs.resolve_job_def("datasets")
        for key in DATASET_KEYS:
            with console.status(f"{key}: install, samples, annotations, knowledge, questions"):
                result = _run(job, key, instance)
            passed, total = _checks(result)
            failures += (not result.success) + (total - passed)
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
            datasets.add_row(
                key,
                "ok" if result.success else "FAILED",
                str(s.get("dagster/row_count", "-")),
                str(s.get("anomalous", "-")),
                str(a.get("boxes", "-")),
                str(k.get("dagster/row_count", "-")),
                str(t.get("dagster/row_count", "-")),
                str(q.get("dagster/row_count", "-")),
                str(s.get("quarantine_rows", 0) + a.get("quarantine_rows", 0)),
                f"{passed}/{total}",
            )
        console.print(datasets)
        job = defs.resolve_job_def("training_sets")
        for recipe in TRAINING_SETS:
            with console.status(f"training set {recipe}"):
                result = _run(job, recipe, instance)
            passed, total = _checks(result)
            failures += (not result.success) + (total - passed)
            meta = _meta(result, "training_set")
            leaks = next(
                (
                    e.metadata["leaks"].value
                    for e in result.get_asset_check_evaluations()
                    if e.check_name == "no_training_image_in_eval_sets"
                ),
                "-",
            )
            recipes.add_row(
                recipe,
                "ok" if result.success else "FAILED",
                str(meta.get("style", "-")),
                str(meta.get("dagster/row_count", "-")),
                str(meta.get("eval_questions", "-")),
                str(leaks),
                f"{passed}/{total}",
            )
        console.print(recipes)
        job = defs.resolve_job_def("training")
        with console.status("training the demo recipe (tiny Qwen2.5-VL, CPU)"):
            result = _run(job, "demo", instance)
        failures += not result.success
        meta = _meta(result, "grpo_run")
        console.print(
            f"grpo_run[demo]: {'ok' if result.success else 'FAILED'}, steps "
            f"{meta.get('steps', '-')}, final mean reward {meta.get('final_mean_reward', '-')}, "
            f"checkpoint {meta.get('checkpoint', '-')}",
            soft_wrap=True,
        )
        failures += _evaluate(defs, instance)
    return 1 if failures else 0


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
        "Scores are meaningless on the random tiny model; every table is real. "
        "Open the UI with: make ui"
    )


if __name__ == "__main__":
    sys.exit(main())
