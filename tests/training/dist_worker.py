"""One process of the multi-process trainer tests (run by torchrun or with RANK/WORLD_SIZE set).

    python tests/training/dist_worker.py MODEL_DIR OUT_DIR {ddp,deepspeed}

Trains ``DifficultyAwareGRPOTrainer`` for 2 steps of one group (4 completions) per process
with resampling on (3 rounds) and writes ``OUT_DIR/rank<r>.json``: the sizes of this
process's generate calls, the final step and the logged metrics. On rank 1 every completion
is wrong, so only rank 1 has a failing group: the ranks must still make the same calls.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image
from trl import GRPOConfig

from iad_pipeline.models.processors import load_model_and_processor
from training.trainer import DifficultyAwareGRPOTrainer, DifficultyConfig

ZERO2 = {
    "zero_optimization": {"stage": 2},
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "bf16": {"enabled": False},
}


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def accuracy(completions: list, solution: list, **kwargs) -> list[float]:
    """Rank 1: always wrong. Elsewhere: the first completion of each group is right."""
    if rank() == 1:
        return [0.0] * len(completions)
    return [1.0 if i % 4 == 0 else 0.0 for i in range(len(completions))]


def length(completions: list, **kwargs) -> list[float]:
    return [len(c[0]["content"]) / 100 for c in completions]


def main(model_dir: str, out_dir: str, mode: str) -> None:
    model, processor = load_model_and_processor(model_dir)
    n = 4
    dataset = Dataset.from_dict(
        {
            "prompt": [
                [{"role": "user", "content": f"Is there any anomaly in part {i}?"}]
                for i in range(n)
            ],
            "image": [Image.new("RGB", (64, 64), (50 * i, 80, 80)) for i in range(n)],
            "solution": ["A"] * n,
        }
    ).cast_column("image", ImageFeature())
    args = GRPOConfig(
        output_dir=str(Path(out_dir) / "run"),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        deepspeed=ZERO2 if mode == "deepspeed" else None,
    )
    trainer = DifficultyAwareGRPOTrainer(
        model=model,
        reward_funcs=[accuracy, length],
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        difficulty=DifficultyConfig(resample_rounds=3),
    )
    sizes: list[int] = []
    generate_single_turn = trainer._generate_single_turn

    def counting(prompt_ids, *rest, **kwargs):
        sizes.append(len(prompt_ids))
        return generate_single_turn(prompt_ids, *rest, **kwargs)

    trainer._generate_single_turn = counting
    trainer.train()
    report = {
        "rank": rank(),
        "world_size": trainer.accelerator.num_processes,
        "deepspeed": trainer.is_deepspeed_enabled,
        "generate_sizes": sizes,
        "global_step": trainer.state.global_step,
        "log_history": trainer.state.log_history,
    }
    Path(out_dir, f"rank{rank()}.json").write_text(json.dumps(report), encoding="utf-8")
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


if __name__ == "__main__":
    main(*sys.argv[1:4])
