"""Training of a recipe, stage by stage: the script ``accelerate launch`` (or ``iad train``) runs.

One straight ``main()``: load the recipe, claim the run folder (a folder holding another run's
checkpoints is refused unless ``--resume`` continues the same recipe or ``--overwrite``
empties it), then run the recipe's stages in order on the same folder -- ``sft`` (TRL's
``SFTTrainer``, see ``training/sft.py``) and ``grpo`` (TRL's ``GRPOTrainer`` or EMIT's
difficulty-aware one) -- each saving ``DIR/<stage>/checkpoint-<step>/`` and each starting from
the previous stage's final checkpoint. A run killed in either stage resumes in that stage
(``--resume``); a finished stage is not trained again. For the tiny offline model the
untrained model is kept as ``DIR/base/checkpoint-0``, the recipe's baseline for evaluation.
Launched by Dagster through Pipes, rank 0 alone reports logs and the final materialization
(every rank inherits the Pipes environment; several reports would fail the step).

    accelerate launch training/grpo.py --recipe emit --output runs/emit
    python -m training.grpo --recipe demo --output runs/demo --max-steps 4
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from iad_pipeline.errors import IadError
from iad_pipeline.models.emit.checkpoint import quiet_module_keys
from training.arguments import peft_config, target_steps, trainer_fields
from training.callbacks import RewardLog, use_table_callbacks
from training.checkpoints import DoneMarker, claim_run_dir, latest_checkpoint, stage_dir, step_of
from training.config import Recipe, evaluation_protocol, load_recipe
from training.dataset import default_training_set_dir, load_training_dataset
from training.emit_stages import prepare_model, prepare_trainer
from training.model_setup import keep_base, stage_model
from training.report import run_data_version, run_metadata, run_summary

log = logging.getLogger("training.grpo")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def pipes_session() -> Iterator[Any]:
    """Dagster Pipes on rank 0 when launched by Dagster, else nothing."""
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    if rank() != 0 or DAGSTER_PIPES_CONTEXT_ENV_VAR not in os.environ:
        yield None
        return
    with open_dagster_pipes() as pipes:
        yield pipes


def grpo_config(recipe: Recipe, output: Path, max_steps: int | None, seed: int):
    """TRL's ``GRPOConfig``: the shared trainer fields, the reward weights, the recipe's
    ``grpo`` block, and ``--max-steps`` over all of them."""
    from trl import GRPOConfig

    fields = {
        **trainer_fields(recipe, output, seed),
        "reward_weights": [r.weight for r in recipe.rewards],
        "remove_unused_columns": False,
        **recipe.grpo,
    }
    if max_steps is not None:
        fields["max_steps"] = max_steps
    return GRPOConfig(**fields)


def build_trainer(recipe: Recipe, model, processor, dataset, config):
    """TRL's ``GRPOTrainer`` (or the difficulty-aware one) with the recipe's rewards, the DONE
    marker and the reward table."""
    from trl import GRPOTrainer

    from training.rewards import get_reward

    rewards = [get_reward(r.name, **r.params) for r in recipe.rewards]
    kwargs = {
        "model": model,
        "reward_funcs": rewards,
        "args": config,
        "train_dataset": dataset,
        "processing_class": processor,
        "peft_config": peft_config(recipe),
    }
    if recipe.difficulty.enabled:
        from training.trainer import DifficultyAwareGRPOTrainer

        trainer = DifficultyAwareGRPOTrainer(difficulty=recipe.difficulty, **kwargs)
    else:
        trainer = GRPOTrainer(**kwargs)
    trainer.add_callback(DoneMarker(recipe.name, "grpo"))
    use_table_callbacks(trainer, RewardLog())
    return trainer


def recipe_fingerprint(recipe: Recipe) -> str:
    """A digest of everything in the recipe that changes what trains (not its description)."""
    values = dataclasses.asdict(recipe)
    values.pop("description")
    values.pop("source")
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="GRPO training of one recipe.")
    parser.add_argument("--recipe", required=True, help="recipe name or YAML path")
    parser.add_argument("--output", required=True, help="folder of checkpoint-<step>/")
    parser.add_argument("--training-set", help="exported training set (datasets folder)")
    parser.add_argument("--model-dir", help="where the tiny model is built (default: output)")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the checkpoints already in --output and start over",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="tracebacks for errors in the recipe or data"
    )
    return parser.parse_args(argv)


def run_stage(recipe: Recipe, stage: str, args: argparse.Namespace, output: Path, start, pipes):
    """Train one stage into ``DIR/<stage>``, resuming from its newest complete checkpoint;
    a stage already at its target step is not trained again."""
    folder = stage_dir(output, stage)
    resume = latest_checkpoint(folder)
    target = target_steps(recipe, args.max_steps, stage)
    done_step = step_of(resume) if resume else 0
    position = f"stage {stage} ({recipe.stages.index(stage) + 1}/{len(recipe.stages)})"
    if target is not None and done_step >= target:
        # already trained (a retried or re-materialized run): report, train nothing
        log.info(
            "recipe %s: %s: %s already reached step %d", recipe.name, position, resume, done_step
        )
        return
    dataset_dir = Path(args.training_set or default_training_set_dir(recipe.training_set))
    dataset = load_training_dataset(dataset_dir, recipe, args.seed, stage)
    # (a previous stage's checkpoint holds the module's tensors, put in place just below)
    with quiet_module_keys(recipe.emit_module.active):
        model, processor = stage_model(recipe, Path(args.model_dir or output), start)
    # EMIT's module: attached, its weights from the checkpoint resumed or the previous stage,
    # and in stage 1 everything else frozen
    model = prepare_model(model, processor, recipe.emit_module, stage, start=start, resume=resume)
    if stage == "sft":
        from training.sft import build_sft_trainer, sft_config

        config = sft_config(recipe, folder, args.max_steps, args.seed)
        trainer = build_sft_trainer(recipe, model, processor, dataset, config)
    else:
        config = grpo_config(recipe, folder, args.max_steps, args.seed)
        trainer = build_trainer(recipe, model, processor, dataset, config)
    prepare_trainer(trainer, recipe.emit_module)  # module trained and saved with each checkpoint
    begin = f"resuming from {resume}" if resume else "starting from step 0"
    origin = f" from {start}" if start is not None else ""
    message = f"recipe {recipe.name}: {position}{origin}: {len(dataset)} prompts; {begin}"
    log.info(message)
    if rank() == 0:
        print(message, flush=True)
    if pipes:
        pipes.log.info(message)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if rank() == 0 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return train(args)
    except IadError as exc:
        if args.verbose:
            raise
        # a user error: one line, exit 2 (``iad train`` prints nothing more)
        print(f"iad: error: {exc}", file=sys.stderr, flush=True)
        return 2


def train(args: argparse.Namespace) -> int:
    """Claim the run folder, train the recipe's stages in order, report the run."""
    recipe = load_recipe(args.recipe)
    output = Path(args.output).absolute()
    if rank() == 0:
        claim_run_dir(
            output,
            recipe.name,
            recipe_fingerprint(recipe),
            resume=args.resume,
            overwrite=args.overwrite,
            evaluation=evaluation_protocol(recipe),
            trained_pixels=(recipe.image.min_pixels, recipe.image.max_pixels),
        )
    with pipes_session() as pipes:
        if rank() == 0:
            keep_base(recipe, Path(args.model_dir or output), output)
        start = None
        for stage in recipe.stages:
            run_stage(recipe, stage, args, output, start, pipes)
            start = latest_checkpoint(stage_dir(output, stage))
        result = run_summary(recipe, output)
        if rank() == 0:
            print(json.dumps({"iad_training_summary": result}), flush=True)
        if pipes:
            pipes.report_asset_materialization(
                metadata=run_metadata(recipe, result), data_version=run_data_version(result)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
