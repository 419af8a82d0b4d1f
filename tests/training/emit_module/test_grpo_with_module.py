"""TRL's GRPO with the module: generation, log-probabilities and loss all go through it."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from trl import GRPOConfig, GRPOTrainer

from iad_pipeline.models.emit import EMIT_WEIGHTS_NAME, add_hint_placeholder, find_emit_module
from tests.training.emit_module.emit_helpers import FAMILIES, SMALL, TWO_IMAGES, images, with_module
from training.emit_stages import prepare_trainer


def varied_length(completions, **_):
    """A reward with spread: the completion's length modulo 3."""
    return [float(len(c[0]["content"]) % 3) for c in completions]


def dataset() -> Dataset:
    rows = {"prompt": [], "images": []}
    for i, task in enumerate(("anomaly_detection", "defect_localization", "defect_description")):
        content = add_hint_placeholder(TWO_IMAGES, task=task, n_images=2, settings=SMALL)
        rows["prompt"].append([{"role": "user", "content": content}])
        rows["images"].append(images(seed=i))
    return Dataset.from_dict(rows)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_grpo_trains_the_adapter_and_the_module_and_saves_it(model_dirs, family, tmp_path):
    model, processor = with_module(model_dirs, family)
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        max_steps=2,
        learning_rate=1e-2,
        save_strategy="steps",
        save_steps=2,
        report_to="none",
        seed=0,
        remove_unused_columns=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[varied_length],
        args=args,
        train_dataset=dataset(),
        processing_class=processor,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    emit = find_emit_module(trainer.model)
    assert not any(p.requires_grad for p in emit.parameters())  # PEFT froze it with the base
    prepare_trainer(trainer, SMALL)
    assert all(p.requires_grad for p in emit.parameters())
    before = {k: v.clone() for k, v in emit.state_dict().items()}
    trainer.train()
    moved = [k for k, v in emit.state_dict().items() if not torch.equal(v, before[k])]
    assert "soft_prompt.weight" in moved and "projector.conv.weight" in moved
    saved = tmp_path / "grpo" / "checkpoint-2"
    assert (saved / EMIT_WEIGHTS_NAME).is_file()
    assert (saved / "adapter_model.safetensors").is_file()
