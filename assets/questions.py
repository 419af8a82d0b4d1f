"""Question assets: the multiple-choice question bank per dataset and the training sets."""

import dagster as dg
import polars as pl

from assets.annotations import annotations
from assets.failures import iad_errors_fail_the_step
from assets.ingest import samples
from assets.partitions import datasets_partitions, training_sets_partitions
from iad_pipeline.markdown import markdown_table
from iad_pipeline.questions.validate import invalid_questions
from iad_pipeline.resources import IadConfig
from iad_pipeline.stages import TRAINING_SETS, write_question_bank, write_training_set


def _examples(df: pl.DataFrame, n: int = 4) -> str:
    parts = []
    for row in df.unique(subset=["style", "task"], keep="first").head(n).iter_rows(named=True):
        parts.append(
            f"**{row['style']} / {row['task']}** (answer {row['answer']})\n\n"
            f"```\n{row['question']}\n```"
        )
    return "\n\n".join(parts) or "_(no questions)_"


@dg.asset(
    partitions_def=datasets_partitions,
    deps=[samples, annotations],
    group_name="questions",
    kinds={"polars", "parquet"},
    description="Multiple-choice questions per sample in every recipe's style (EMIT's four "
    "tasks, AnomalyR1, LR-IAD and AD-FM binary with boxes); MMAD: its own questions.",
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec(
            "every_question_has_one_valid_answer", asset="question_bank", blocking=True
        )
    ],
)
def question_bank(context: dg.AssetExecutionContext, iad: IadConfig) -> dg.MaterializeResult:
    key = context.partition_key
    with iad_errors_fail_the_step():
        questions, path = write_question_bank(
            key,
            iad.layout(),
            seed=iad.seed,
            template_backend=iad.template_backend,
        )
    bad = invalid_questions(questions).height
    counts = questions.group_by(["style", "task"]).len("questions").sort(["style", "task"])
    answers = questions.group_by(["task", "answer"]).len("questions").sort(["task", "answer"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": questions.height,
            "path": dg.MetadataValue.path(str(path)),
            "images": questions["sample_id"].n_unique(),
            "counts_per_task": dg.MetadataValue.md(markdown_table(counts, 50)),
            "answer_letters": dg.MetadataValue.md(markdown_table(answers, 60)),
            "examples": dg.MetadataValue.md(_examples(questions)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_question_has_one_valid_answer",
                passed=bad == 0,
                metadata={"invalid": bad},
            )
        ],
    )


@dg.asset(
    partitions_def=training_sets_partitions,
    deps=[
        dg.AssetDep(question_bank, partition_mapping=dg.AllPartitionMapping()),
        dg.AssetDep("domain_knowledge", partition_mapping=dg.AllPartitionMapping()),
    ],
    group_name="questions",
    kinds={"polars", "huggingface"},
    description="A recipe's training questions (its split and style), exported as a "
    "datasets.Dataset for TRL, with the leakage guard's report.",
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec("no_training_image_in_eval_sets", asset="training_set", blocking=True),
        dg.AssetCheckSpec("training_set_not_empty", asset="training_set", blocking=True),
    ],
)
def training_set(context: dg.AssetExecutionContext, iad: IadConfig) -> dg.MaterializeResult:
    recipe = context.partition_key
    with iad_errors_fail_the_step():
        result = write_training_set(
            recipe, iad.layout(), seed=iad.seed, allow_leaks=iad.allow_leaks
        )
    for item in result.unavailable:
        context.log.warning(f"leakage guard: evaluation set {item} is not installed, not checked")
    leaks = result.leaks
    leak_list = markdown_table(leaks, 30) if leaks.height else "_(none)_"
    counts = result.train.group_by(["dataset", "task"]).len("questions").sort(["dataset", "task"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.train.height,
            "eval_questions": result.eval.height,
            "style": result.style,
            "split_recipe": TRAINING_SETS[recipe].split,
            "note": TRAINING_SETS[recipe].note or "-",
            "train_images": result.train["sample_id"].n_unique(),
            "path": dg.MetadataValue.path(str(result.paths["train"])),
            "hf_dataset": dg.MetadataValue.path(str(result.paths["hf"])),
            "guarded_eval_sets": ", ".join(result.guarded),
            "overrides": dg.MetadataValue.json(result.overrides),
            "not_checked": ", ".join(result.unavailable) or "-",
            "counts": dg.MetadataValue.md(markdown_table(counts, 50)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="no_training_image_in_eval_sets",
                passed=leaks.is_empty() or iad.allow_leaks,
                metadata={
                    "leaks": leaks.height,
                    "allowed_by_override": iad.allow_leaks,
                    "leaking_samples": dg.MetadataValue.md(leak_list),
                },
            ),
            dg.AssetCheckResult(
                check_name="training_set_not_empty",
                passed=result.train.height > 0,
                metadata={"questions": result.train.height},
            ),
        ],
    )
