"""Plain GRPO against difficulty-aware GRPO (EMIT) from the same SFT checkpoint, same seeds.

EMIT's ablation in miniature, on the tiny offline Qwen2.5-VL and the demo profile's EMIT
training set (run ``make demo`` first, or pass ``--training-set``): the anomaly-detection
questions are split by sample into a training part and a held-out part; one SFT warm start is
trained and saved; then GRPO runs twice from it with the same seed -- plain (TRL's
``GRPOTrainer``) and difficulty-aware (advantage reweighting + response resampling) -- and
records per step the mean reward, the fraction of zero-variance groups and the wall time. At
the end each model answers the held-out questions (``training.sft.letter_accuracy``: greedy
on the choice between the reference completions, the finding first for ``sft.think: option``).
Models carry EMIT's comparison module as the demo recipe's stages do. Prints
the table, writes
``learning.png`` (curves) and ``learning.json`` (every number) into ``--out``.

    IAD_PROFILE=demo python bench/bench_learning.py --sft-steps 150 --grpo-steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def step_recorder():
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self):
            self.rows: list[dict] = []
            self.t = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                now = time.perf_counter()
                zero = logs.get("frac_zero_variance_groups", logs.get("frac_reward_zero_std"))
                self.rows.append(
                    {
                        "step": state.global_step,
                        "reward": logs["reward"],
                        "zero_variance": zero,
                        "seconds": now - self.t,
                    }
                )
                self.t = now

    return Recorder()


def main(argv=None) -> int:
    import torch

    from bench.demo_questions import demo_ad_split
    from iad_pipeline.models.emit.checkpoint import quiet_module_keys
    from training.checkpoints import latest_checkpoint
    from training.emit_stages import prepare_model, prepare_trainer
    from training.grpo import build_trainer, grpo_config
    from training.model_setup import load_model, stage_model
    from training.sft import build_sft_trainer, letter_accuracy, sft_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training-set", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "learning")
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--sft-lr", type=float, default=3e-3)
    parser.add_argument("--sft-batch", type=int, default=8)
    parser.add_argument("--grpo-steps", type=int, default=20)
    parser.add_argument("--held-out", type=int, default=148)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe, train, test = demo_ad_split(args.training_set, args.held_out, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = args.out / "model"

    # one SFT warm start, shared by both GRPO runs
    sft_dir = args.out / "sft"
    if latest_checkpoint(sft_dir) is None:
        model, processor = load_model(recipe, model_dir)
        model = prepare_model(model, processor, recipe.emit_module, "sft")
        config = sft_config(recipe, sft_dir, args.sft_steps, args.seed)
        config.save_steps = args.sft_steps
        config.learning_rate = args.sft_lr
        config.per_device_train_batch_size = args.sft_batch
        config.lr_scheduler_type = "constant"
        sft = build_sft_trainer(recipe, model, processor, train, config)
        prepare_trainer(sft, recipe.emit_module)  # the module trains and is saved, as a run does
        sft.train()
    start = latest_checkpoint(sft_dir)

    def from_sft(variant):
        """The SFT checkpoint as a GRPO stage starts from it: EMIT's module and its weights."""
        with quiet_module_keys(variant.emit_module.active):
            model, processor = stage_model(variant, model_dir, start)
        return prepare_model(model, processor, variant.emit_module, "grpo", start=start), processor

    model, processor = from_sft(recipe)
    results = {
        "sft": {"held_out_accuracy": letter_accuracy(model, processor, test, recipe.sft.think)}
    }

    for mode in ("plain", "difficulty"):
        difficulty = dataclasses.replace(recipe.difficulty, enabled=(mode == "difficulty"))
        variant = dataclasses.replace(recipe, difficulty=difficulty)
        model, processor = from_sft(variant)
        out = args.out / mode
        config = grpo_config(variant, out, args.grpo_steps, args.seed)
        config.save_strategy = "no"
        trainer = build_trainer(variant, model, processor, train, config)
        prepare_trainer(trainer, variant.emit_module)
        recorder = step_recorder()
        trainer.add_callback(recorder)
        began = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - began
        results[mode] = {
            "steps": recorder.rows,
            "wall_s": wall,
            "s_per_step": wall / max(args.grpo_steps, 1),
            "held_out_accuracy": letter_accuracy(trainer.model, processor, test, recipe.sft.think),
        }

    from iad_pipeline.environment import describe, environment

    n = len(test)
    # the curves depend on the machine's kernels and libraries, as the demo's numbers do
    results["environment"] = environment()
    print(f"measured on {describe(results['environment'])}")
    print(f"held-out anomaly-detection questions: {n} (chance 50%)")
    print(
        f"{'run':<12}{'acc %':>8}{'95% +-':>8}{'reward 1st':>12}{'reward last':>12}"
        f"{'zero-var mean':>15}{'s/step':>8}"
    )
    for name in ("sft", "plain", "difficulty"):
        r = results[name]
        acc = r["held_out_accuracy"]
        half = 196 * math.sqrt(acc * (1 - acc) / n)
        steps = r.get("steps") or []
        first = f"{steps[0]['reward']:.3f}" if steps else "-"
        last = f"{steps[-1]['reward']:.3f}" if steps else "-"
        zeros = [s["zero_variance"] for s in steps if s["zero_variance"] is not None]
        zero = f"{sum(zeros) / len(zeros):.2f}" if zeros else "-"
        sps = f"{r['s_per_step']:.1f}" if "s_per_step" in r else "-"
        print(f"{name:<12}{100 * acc:>8.1f}{half:>8.1f}{first:>12}{last:>12}{zero:>15}{sps:>8}")
    (args.out / "learning.json").write_text(json.dumps(results, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in ("plain", "difficulty"):
        steps = results[mode]["steps"]
        ax1.plot([s["step"] for s in steps], [s["reward"] for s in steps], label=mode)
        ax2.plot([s["step"] for s in steps], [s["zero_variance"] for s in steps], label=mode)
    ax1.set(xlabel="step", ylabel="mean reward", title="GRPO reward from one SFT checkpoint")
    ax2.set(xlabel="step", ylabel="fraction", title="zero-variance groups", ylim=(-0.05, 1.05))
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    fig.savefig(args.out / "learning.png", dpi=100)
    print(f"wrote {args.out / 'learning.png'} and {args.out / 'learning.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
