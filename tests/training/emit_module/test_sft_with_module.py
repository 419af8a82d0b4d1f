"""EMIT's stage 1 with TRL's SFTTrainer: bare-letter answers, only the module learns."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from iad_pipeline.models.emit import EMIT_WEIGHTS_NAME, add_hint_placeholder, find_emit_module
from tests.training.emit_module.emit_helpers import FAMILIES, SMALL, TWO_IMAGES, images, load
from training.emit_stages import prepare_model, prepare_trainer


def dataset() -> Dataset:
    rows = {"prompt": [], "completion": [], "images": []}
    for i, (task, answer) in enumerate((("anomaly_detection", "A"), ("defect_localization", "B"))):
        content = add_hint_placeholder(TWO_IMAGES, task=task, n_images=2, settings=SMALL)
        rows["prompt"].append([{"role": "user", "content": content}])
        rows["completion"].append(
            [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        )
        rows["images"].append(images(seed=i))
    return Dataset.from_dict(rows)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_stage1_sft_trains_only_the_module_and_saves_it(model_dirs, family, tmp_path):
    model, processor = load(model_dirs, family)
    prepare_model(model, processor, SMALL, "sft")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=2,
        max_steps=2,
        learning_rate=1e-2,
        save_strategy="steps",
        save_steps=2,
        report_to="none",
        seed=0,
        max_length=None,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset(), processing_class=processor
    )
    prepare_trainer(trainer, SMALL)
    trainer.train()
    own = {id(p) for p in find_emit_module(model).parameters()}
    for name, param in model.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved == (id(param) in own), name
    assert (tmp_path / "sft" / "checkpoint-2" / EMIT_WEIGHTS_NAME).is_file()
