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
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from training.checkpoints import (
    BASE_STAGE,
    DoneMarker,
    claim_run_dir,
    latest_checkpoint,
    stage_dir,
    step_of,
    write_done,
)
from training.config import TINY_INTERNVL, TINY_MODEL, Recipe, load_recipe

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


def default_training_set_dir(name: str) -> Path:
    """Where the ``training_set`` asset exports ``name`` for the current profile."""
    from iad_pipeline.paths import Layout

    return Layout.resolve().training_set_hf(name)


def load_training_dataset(path: Path, recipe: Recipe, seed: int, stage: str = "grpo"):
    """The exported training set, in TRL's multimodal form: structured prompt + images list.

    With EMIT's module, hinted questions get its placeholder, and stage 1 (``sft``) keeps
    only the questions EMIT aligns the module on (anomaly discrimination, localization).
    """
    import datasets

    from iad_pipeline.errors import IadError
    from iad_pipeline.questions.prompts import to_content
    from training.emit_module import add_hint_placeholder
    from training.emit_module.stages import stage1_question

    if not path.is_dir():
        msg = (
            f"{path}: no training set; materialize training_set[{recipe.training_set}] "
            "first (or pass --training-set DIR)"
        )
        raise IadError(msg)
    ds = datasets.load_from_disk(str(path))
    module = recipe.emit_module
    if module.active and stage == "sft":
        ds = ds.filter(lambda row: stage1_question(row["task"]))
    if recipe.max_train_samples is not None and len(ds) > recipe.max_train_samples:
        ds = ds.shuffle(seed=seed).select(range(recipe.max_train_samples))

    def to_trl(row: dict) -> dict:
        content = to_content(row["prompt"][-1]["content"])
        images = (
            [row["reference_image"], row["image"]] if row["reference_image"] else [row["image"]]
        )
        if sum(block["type"] == "image" for block in content) != len(images):
            # a style without markers: TRL puts the images first
            content = [{"type": "image"} for _ in images] + [
                b for b in content if b["type"] != "image"
            ]
        content = add_hint_placeholder(
            content, task=row["task"], n_images=len(images), settings=module
        )
        return {"prompt": [{"role": "user", "content": content}], "images": images}

    return ds.map(to_trl, remove_columns=["image", "reference_image"])


def load_model(recipe: Recipe, model_dir: Path):
    """Model and processor; ``tiny`` / ``tiny-internvl3`` build the offline tiny models once."""
    import torch

    from training.tiny_model import build_tiny_qwen25vl, load_model_and_processor

    path = recipe.model
    if recipe.model == TINY_MODEL:
        path = model_dir / "tiny-qwen25vl"
        if not path.is_dir():
            build_tiny_qwen25vl(path)
    if recipe.model == TINY_INTERNVL or _is_internvl(path):
        from training.tiny_internvl import (
            build_tiny_internvl3,
            load_internvl_model_and_processor,
        )

        if recipe.model == TINY_INTERNVL:
            path = model_dir / TINY_INTERNVL
            if not path.is_dir():
                build_tiny_internvl3(path)
        if recipe.peft.method == "qlora":
            from training.quantization import load_qlora_model
            from training.tiny_internvl import load_internvl_processor

            return load_qlora_model(path), load_internvl_processor(path)
        # InternVL tiles images at its own size: the Qwen pixel budget does not apply
        return load_internvl_model_and_processor(path)
    if recipe.peft.method == "qlora":
        # 4-bit NF4 base or a clear stop at start, never a silent unquantized run
        from training.quantization import load_qlora_model
        from training.tiny_model import load_processor

        model = load_qlora_model(path, gradient_checkpointing=torch.cuda.is_available())
        processor = load_processor(path)
    else:
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        model, processor = load_model_and_processor(path, dtype=dtype)
    # transformers 5 reads the pixel budget from size (shortest_edge = min pixels,
    # longest_edge = max pixels); the old min_pixels/max_pixels attributes are deprecated
    processor.image_processor.size = {
        "shortest_edge": recipe.image.min_pixels,
        "longest_edge": recipe.image.max_pixels,
    }
    return model, processor


def _is_internvl(path: str | Path) -> bool:
    """Whether a local model folder holds an InternVL model (its config's model_type)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "internvl"


def peft_config(recipe: Recipe):
    if recipe.peft.method == "none":
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.peft.r,
        lora_alpha=recipe.peft.alpha,
        lora_dropout=recipe.peft.dropout,
        target_modules=list(recipe.peft.target_modules),
        task_type="CAUSAL_LM",
    )


def trainer_fields(recipe: Recipe, output: Path, seed: int) -> dict[str, Any]:
    """The trainer arguments every stage shares: output, seed, device and precision, step
    checkpoints with their optimizer state (so a stage resumes), DeepSpeed."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "output_dir": str(output),
        "seed": seed,
        "report_to": "none",
        "use_cpu": not cuda,
        "bf16": cuda,
        "gradient_checkpointing": cuda,
        "save_strategy": "steps",
        "save_only_model": False,
        "deepspeed": recipe.deepspeed_config(),
    }


def grpo_config(recipe: Recipe, output: Path, max_steps: int | None, seed: int):
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
    # our reward table replaces the raw log dictionaries the progress bar would print
    from transformers.trainer_callback import ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress())
    trainer.add_callback(RewardLog())
    return trainer


def QuietProgress():
    """A progress bar without the raw log dictionaries (the reward table shows them)."""
    from transformers.trainer_callback import ProgressCallback

    class _QuietProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return control

    return _QuietProgress()


class RewardLog:
    """Prints one line per logged step on rank 0: the reward table as training runs."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _RewardLog(TrainerCallback):
            header_done = False

            def on_log(self, args, state, control, logs=None, **kwargs):
                if not state.is_world_process_zero or not logs or "reward" not in logs:
                    return control
                per_reward = {
                    k.split("/")[1]: v
                    for k, v in logs.items()
                    if k.startswith("rewards/") and k.endswith("/mean")
                }
                if not self.header_done:
                    names = "".join(f"{n[:14]:>15}" for n in per_reward)
                    print(f"{'step':>6}{'reward':>10}{'std':>8}{'zero-var':>10}{names}", flush=True)
                    self.header_done = True
                zero = logs.get("frac_zero_variance_groups", logs.get("frac_reward_zero_std", 0))
                values = "".join(f"{v:>15.3f}" for v in per_reward.values())
                print(
                    f"{state.global_step:>6}{logs['reward']:>10.3f}"
                    f"{logs.get('reward_std', 0):>8.3f}{zero:>10.2f}{values}",
                    flush=True,
                )
                return control

        return _RewardLog()


class LossLog:
    """Prints one line per logged SFT step on rank 0: step, loss, token accuracy."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _LossLog(TrainerCallback):
            header_done = False

            def on_log(self, args, state, control, logs=None, **kwargs):
                if not state.is_world_process_zero or not logs or "loss" not in logs:
                    return control
                if not self.header_done:
                    print(f"{'step':>6}{'loss':>10}{'token acc':>11}", flush=True)
                    self.header_done = True
                acc = logs.get("mean_token_accuracy", float("nan"))
                print(f"{state.global_step:>6}{logs['loss']:>10.4f}{acc:>11.3f}", flush=True)
                return control

        return _LossLog()


def summary(output: Path) -> dict:
    """What rank 0 reports for one stage folder, read from its newest complete checkpoint's
    trainer_state.json: steps, first and last mean reward (GRPO) or loss (SFT), zero-variance
    fraction, checkpoint path."""
    checkpoint = latest_checkpoint(output)
    history: list[dict] = []
    if checkpoint is not None:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        history = state.get("log_history", [])
    rewards = [h for h in history if "reward" in h]
    losses = [h for h in history if "loss" in h]
    last = rewards[-1] if rewards else {}
    nan = float("nan")
    zero = [h.get("frac_zero_variance_groups", h.get("frac_reward_zero_std")) for h in rewards]
    zero = [z for z in zero if z is not None]
    return {
        "steps": step_of(checkpoint) if checkpoint else 0,
        "first_mean_reward": float(rewards[0]["reward"]) if rewards else nan,
        "final_mean_reward": float(last.get("reward", nan)),
        "frac_zero_variance_groups": float(zero[-1]) if zero else nan,
        "mean_frac_zero_variance_groups": sum(zero) / len(zero) if zero else nan,
        "first_loss": float(losses[0]["loss"]) if losses else nan,
        "final_loss": float(losses[-1]["loss"]) if losses else nan,
        "checkpoint": str(checkpoint) if checkpoint else "",
    }


def stage_args(recipe: Recipe, stage: str) -> dict:
    """The recipe's trainer fields of ``stage`` (``grpo`` block or ``sft.args``)."""
    return recipe.grpo if stage == "grpo" else recipe.sft.args


def target_steps(recipe: Recipe, max_steps: int | None, stage: str = "grpo") -> int | None:
    """The step count a stage aims at, when it is fixed (``max_steps``), else ``None``."""
    steps = max_steps if max_steps is not None else stage_args(recipe, stage).get("max_steps")
    return int(steps) if steps is not None and int(steps) > 0 else None


def recipe_fingerprint(recipe: Recipe) -> str:
    """A digest of everything in the recipe that changes what trains (not its description)."""
    import dataclasses
    import hashlib

    values = dataclasses.asdict(recipe)
    values.pop("description")
    values.pop("source")
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def keep_base(recipe: Recipe, model_dir: Path, output: Path) -> Path | None:
    """``DIR/base/checkpoint-0``: the untrained tiny model, kept as the recipe's baseline.

    Only for the tiny offline model (a copy of a hub model would cost its size in disk).
    """
    import shutil

    from iad_pipeline.fsutil import temp_sibling
    from training.checkpoints import DONE

    if recipe.model != TINY_MODEL:
        return None
    folder = stage_dir(output, BASE_STAGE) / "checkpoint-0"
    if (folder / DONE).is_file():
        return folder
    source = model_dir / "tiny-qwen25vl"
    if not source.is_dir():
        from training.tiny_model import build_tiny_qwen25vl

        build_tiny_qwen25vl(source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(folder, ".copying")
    shutil.copytree(source, tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    write_done(folder, step=0, recipe=recipe.name, stage=BASE_STAGE)
    return folder


def stage_model(recipe: Recipe, model_dir: Path, start: Path | None):
    """Model and processor a stage starts from: the recipe's model, or the previous stage's
    final checkpoint (a LoRA adapter is merged into the base model first)."""
    import dataclasses

    if start is None:
        return load_model(recipe, model_dir)
    if (start / "adapter_config.json").is_file():
        from peft import PeftModel

        model, processor = load_model(recipe, model_dir)
        model = PeftModel.from_pretrained(model, str(start)).merge_and_unload()
        return model, processor
    return load_model(dataclasses.replace(recipe, model=str(start)), model_dir)


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
    from training.emit_module.stages import prepare_model, prepare_trainer

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
    dataset_dir = (
        Path(args.training_set)
        if args.training_set
        else (default_training_set_dir(recipe.training_set))
    )
    dataset = load_training_dataset(dataset_dir, recipe, args.seed, stage)
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
    from iad_pipeline.errors import IadError

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
    recipe = load_recipe(args.recipe)
    output = Path(args.output).absolute()
    if rank() == 0:
        claim_run_dir(
            output,
            recipe.name,
            recipe_fingerprint(recipe),
            resume=args.resume,
            overwrite=args.overwrite,
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


def run_summary(recipe: Recipe, output: Path) -> dict:
    """The final stage's figures (:func:`summary`), its name, and every stage's figures."""
    stages = {stage: summary(stage_dir(output, stage)) for stage in recipe.stages}
    return {**stages[recipe.stages[-1]], "stage": recipe.stages[-1], "stages": stages}


def run_metadata(recipe: Recipe, result: dict) -> dict:
    """What ``grpo_run`` shows: the final stage's figures, then ``<stage>/<figure>`` of each."""
    metadata = {k: v for k, v in result.items() if k not in ("stage", "stages")}
    metadata |= {
        "recipe": recipe.name,
        "model": recipe.model,
        "description": recipe.description,
        "stages": ", ".join(recipe.stages),
    }
    for stage, values in result["stages"].items():
        for key, value in values.items():
            metadata[f"{stage}/{key}"] = value
    return metadata


def run_data_version(result: dict) -> str:
    """``<final stage>-checkpoint-<step>``: a new version whenever a checkpoint is added."""
    return f"{result['stage']}-{Path(result['checkpoint']).name or 'none'}"


if __name__ == "__main__":
    sys.exit(main())
