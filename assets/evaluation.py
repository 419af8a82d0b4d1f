"""Evaluation assets: MMAD and cross-dataset scores per checkpoint, a checkpoint sensor and a
nightly re-evaluation schedule."""

import json
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from assets.failures import iad_errors_fail_the_step
from assets.questions import question_bank
from assets.training import grpo_run
from eval.pipeline import (
    MMAD_SETS,
    EvalOptions,
    evaluate_cross_dataset,
    evaluate_mmad,
    recipe_protocol_on,
)
from eval.protocols import protocol_named
from iad_pipeline.errors import IadError
from iad_pipeline.fingerprint import checkpoint_fingerprint
from iad_pipeline.markdown import markdown_table
from iad_pipeline.resources import IadConfig, RaySection
from iad_pipeline.run_folders import checkpoint_recipe, run_evaluation
from iad_pipeline.stages import CROSS_DATASET_EVAL
from training.checkpoints import base_checkpoint_key, complete_checkpoints

checkpoints_partitions = dg.DynamicPartitionsDefinition(name="checkpoints")
mmad_partitions = dg.MultiPartitionsDefinition(
    {
        "checkpoint": checkpoints_partitions,
        "eval_set": dg.StaticPartitionsDefinition(list(MMAD_SETS)),
    }
)
cross_partitions = dg.MultiPartitionsDefinition(
    {
        "checkpoint": checkpoints_partitions,
        "eval_set": dg.StaticPartitionsDefinition(list(CROSS_DATASET_EVAL)),
    }
)
UPSTREAM = [
    dg.AssetDep(grpo_run, partition_mapping=dg.AllPartitionMapping()),
    dg.AssetDep(question_bank, partition_mapping=dg.AllPartitionMapping()),
]


def _checkpoint(iad: IadConfig, key: str):
    found = complete_checkpoints(iad.layout().runs)
    if key not in found:
        msg = f"checkpoint {key!r} has no complete folder (DONE marker) under {iad.layout().runs}"
        raise dg.Failure(msg, allow_retries=False)
    return found[key]


RECIPE_PROTOCOL = "recipe"


def recipe_protocol(recipe: str) -> tuple[str, dict]:
    """``(protocol name, changes)`` a recipe's checkpoints are evaluated with on MMAD
    (:func:`training.config.evaluation_protocol`); ``mmad`` for a run folder that names no
    recipe.

    >>> recipe_protocol("emit"), recipe_protocol("adfm"), recipe_protocol("no-such-recipe")
    (('emit_think', {}), ('mmad', {}), ('mmad', {}))
    """
    from training.config import RecipeError, evaluation_protocol, load_recipe

    try:
        return evaluation_protocol(load_recipe(recipe))
    except RecipeError:
        return "mmad", {}


def checkpoint_protocol(checkpoint: Path) -> tuple[str, dict]:
    """``(protocol name, changes)`` a checkpoint is evaluated with under ``protocol: recipe``:
    the one its run folder's ``RUN.json`` records (the recipe as it was trained), else its
    recipe's (a run trained before runs recorded it)."""
    return run_evaluation(checkpoint) or recipe_protocol(checkpoint_recipe(checkpoint))


class EvaluationConfig(dg.Config):
    """A run's evaluation settings: the protocol (eval.protocols.PROTOCOLS), MMAD's version,
    what answers (``transformers`` in the run's process, or ``ray``: the same backend on Ray
    Data actors, configured by the ``ray`` section; the answers, run ids and DuckDB rows are
    the same either way), and how far a subtask may fall below the recipe's base model
    before the ``no_subtask_below_base`` check warns."""

    protocol: str = Field(
        default="recipe",
        description="recipe (the checkpoint's recipe's evaluation protocol), mmad, emit_think "
        "or emit_direct",
    )
    knowledge: bool = False
    mmad_version: str = "original"
    backend: str = Field(default="transformers", description="transformers or ray")
    ray: RaySection = Field(default_factory=RaySection)
    margin: float = Field(default=2.0, description="percentage points below the base model")


BASE_CHECK = "no_subtask_below_base"


def _base_check(asset: str, iad: IadConfig, result, margin: float) -> dg.AssetCheckResult:
    """Per (dataset, type): this checkpoint minus the recipe's base model (its latest
    evaluation on the same set and protocol); warns when one falls more than ``margin`` below."""
    from eval.baseline import deltas_vs_base
    from eval.warehouse import Warehouse

    run = result.run
    base_key = base_checkpoint_key(run["recipe"])
    spec = {"asset_key": asset, "check_name": BASE_CHECK, "severity": dg.AssetCheckSeverity.WARN}
    if run["checkpoint"] == base_key:
        return dg.AssetCheckResult(passed=True, metadata={"base": "this is the base model"}, **spec)
    base = Warehouse(iad.layout().warehouse).query(
        "SELECT s.dataset, s.type, s.accuracy FROM scores_by_type s WHERE s.run_id = ("
        "SELECT run_id FROM runs WHERE checkpoint = $c AND eval_set = $e "
        "AND protocol_key = $p ORDER BY finished_at DESC LIMIT 1)",
        {"c": base_key, "e": run["eval_set"], "p": run["protocol_key"]},
    )
    if base.is_empty():
        return dg.AssetCheckResult(
            passed=True, metadata={"base": f"no evaluation of {base_key} yet"}, **spec
        )
    deltas = deltas_vs_base(result.by_type, base, margin)
    below = deltas.filter(pl.col("below_base"))
    meta = {
        "base": base_key,
        "margin": margin,
        "deltas": dg.MetadataValue.md(
            markdown_table(deltas.with_columns(pl.col(pl.Float64).round(2)), max_rows=60)
        ),
        "below_base": ", ".join(f"{d}/{t}" for d, t in below.select("dataset", "type").iter_rows()),
    }
    return dg.AssetCheckResult(passed=below.is_empty(), metadata=meta, **spec)


def _evaluate(
    context: dg.AssetExecutionContext,
    iad: IadConfig,
    evaluate,
    config: EvaluationConfig | None = None,
) -> dg.MaterializeResult:
    """Shared body of the evaluation assets: the partition's checkpoint on its set."""
    keys = context.partition_key.keys_by_dimension
    checkpoint = _checkpoint(iad, keys["checkpoint"])
    with iad_errors_fail_the_step():
        config = config or EvaluationConfig()
        if config.backend not in ("transformers", "ray"):
            msg = f"evaluation backend {config.backend!r}; valid: transformers, ray"
            raise IadError(msg)
        changes = {"mmad_version": config.mmad_version}
        if config.knowledge:
            changes["knowledge"] = True
        recipe = checkpoint_recipe(checkpoint)
        name = config.protocol
        if name == RECIPE_PROTOCOL:
            name, recipe_changes = recipe_protocol_on(
                *checkpoint_protocol(checkpoint), keys["eval_set"]
            )
            changes = recipe_changes | changes
        protocol = protocol_named(name, **changes)
        result = evaluate(
            checkpoint,
            keys["eval_set"],
            checkpoint_key=keys["checkpoint"],
            recipe=recipe,
            layout=iad.layout(),
            options=EvalOptions(
                protocol=protocol,
                backend=config.backend,
                ray=config.ray.model_dump() if config.backend == "ray" else None,
            ),
        )
    check = _base_check(context.assets_def.key.path[-1], iad, result, config.margin)
    meta = _metadata(result)
    for key, value in (check.metadata or {}).items():
        if key == "deltas":
            meta["delta_vs_base"] = value
    return dg.MaterializeResult(metadata=meta, check_results=[check])


def _metadata(result) -> dict:
    meta = {
        "headline": result.headline if result.headline is not None else float("nan"),
        "questions": result.answers.height,
        "run_id": result.run["run_id"],
        "scores": dg.MetadataValue.md(result.table_markdown),
    }
    for row in result.by_type.iter_rows(named=True):
        if row["dataset"] in ("Average", result.run["eval_set"]) and row["accuracy"] is not None:
            name = row["type"].lower().replace(" ", "_").replace("-", "_")
            meta[f"accuracy/{name}"] = float(row["accuracy"])
    for name, path in result.paths.items():
        meta[name] = dg.MetadataValue.path(str(path))
    if result.warnings:  # e.g. a module-trained run's checkpoint evaluated as the plain model
        meta["warnings"] = "; ".join(result.warnings)
    return meta


@dg.asset(
    partitions_def=mmad_partitions,
    deps=UPSTREAM,
    group_name="evaluation",
    kinds={"duckdb", "transformers"},
    pool="gpu",
    description="MMAD on one query set with one checkpoint under a named protocol (config: "
    "mmad, the default, or emit_think/emit_direct; mmad_version original or corrected): "
    "answers (resumable), scores by type and category into DuckDB, plots, CSV.",
    code_version="1",
    check_specs=[dg.AssetCheckSpec(BASE_CHECK, asset="mmad_eval")],
)
def mmad_eval(
    context: dg.AssetExecutionContext, iad: IadConfig, config: EvaluationConfig
) -> dg.MaterializeResult:
    return _evaluate(context, iad, evaluate_mmad, config)


@dg.asset(
    partitions_def=cross_partitions,
    deps=UPSTREAM,
    group_name="evaluation",
    kinds={"duckdb", "transformers"},
    pool="gpu",
    description="AD-FM's cross-dataset protocol on one test set with one checkpoint: binary "
    "accuracy and F1-macro (per category too) into DuckDB.",
    code_version="1",
    check_specs=[dg.AssetCheckSpec(BASE_CHECK, asset="cross_dataset_eval")],
)
def cross_dataset_eval(
    context: dg.AssetExecutionContext, iad: IadConfig, config: EvaluationConfig
) -> dg.MaterializeResult:
    # AD-FM's cross-dataset protocol asks its binary questions 1-shot under MMAD's rendering
    return _evaluate(context, iad, evaluate_cross_dataset, config)


mmad_eval_job = dg.define_asset_job("mmad_evaluation", selection=[mmad_eval])
cross_eval_job = dg.define_asset_job("cross_dataset_evaluation", selection=[cross_dataset_eval])


def evaluation_requests(key: str, print_: str, sets_by_job) -> list[dg.RunRequest]:
    """One run request per evaluation set; the run key carries the checkpoint's content, so
    a re-trained checkpoint with the same name is evaluated again."""
    return [
        dg.RunRequest(
            run_key=f"{job}:{key}:{eval_set}:{print_}",
            job_name=job,
            partition_key=dg.MultiPartitionKey({"checkpoint": key, "eval_set": eval_set}),
        )
        for job, sets in sets_by_job.items()
        for eval_set in sets
    ]


EVAL_SETS = {"mmad_evaluation": MMAD_SETS, "cross_dataset_evaluation": CROSS_DATASET_EVAL}


@dg.sensor(
    jobs=[mmad_eval_job, cross_eval_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Each complete checkpoint (DONE marker) becomes a partition and is "
    "evaluated on every MMAD query set and cross-dataset set, again whenever its content "
    "fingerprint (the sha256 of its weights and configs, the answer store's key) changes.",
)
def checkpoint_sensor(context: dg.SensorEvaluationContext, iad: IadConfig):
    seen = json.loads(context.cursor) if context.cursor else {}
    found = complete_checkpoints(iad.layout().runs)
    new_keys, requests = [], []
    for key, folder in found.items():
        # the same fingerprint keys the answer store, so a request for changed content is
        # answered anew; digests are cached by file stat, so unchanged GBs are not re-read
        print_ = checkpoint_fingerprint(folder, iad.layout().fingerprint_cache)
        if seen.get(key) == print_:
            continue
        if not context.instance.has_dynamic_partition("checkpoints", key):
            new_keys.append(key)
        requests += evaluation_requests(key, print_, EVAL_SETS)
        seen[key] = print_
    if not requests:
        return dg.SkipReason(f"no new or changed checkpoint among {len(found)}")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[checkpoints_partitions.build_add_request(new_keys)]
        if new_keys
        else [],
        cursor=json.dumps(seen, sort_keys=True),
    )


@dg.schedule(
    cron_schedule="0 3 * * *",
    job=mmad_eval_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly: re-evaluate each recipe's latest checkpoint on MMAD.",
)
def nightly_reevaluation(context: dg.ScheduleEvaluationContext, iad: IadConfig):
    latest: dict[str, str] = {}
    for key in complete_checkpoints(iad.layout().runs):
        recipe, step = key.rsplit("-", 1)
        if recipe not in latest or int(step) > int(latest[recipe].rsplit("-", 1)[1]):
            latest[recipe] = key
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(
            run_key=f"nightly:{day}:{key}:{eval_set}",
            partition_key=dg.MultiPartitionKey({"checkpoint": key, "eval_set": eval_set}),
        )
        for key in sorted(latest.values())
        for eval_set in MMAD_SETS
        if context.instance.has_dynamic_partition("checkpoints", key)
    ]
