"""The stage helpers: stage 1 freezes, weights carry from one stage to the next."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from iad_pipeline.models.emit import (
    EmitError,
    EmitModuleSettings,
    find_emit_module,
    save_emit_module,
)
from tests.training.emit_module.emit_helpers import SMALL, load
from training.emit_stages import prepare_model, prepare_trainer, stage1_question


def test_sft_stage_trains_only_the_module(model_dirs):
    model, processor = load(model_dirs, "internvl")
    prepare_model(model, processor, SMALL, "sft")
    emit = find_emit_module(model)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in emit.parameters()}


def test_grpo_stage_starts_from_the_sft_weights_and_resume_wins(model_dirs, tmp_path):
    model, processor = load(model_dirs, "qwen2_5_vl")
    prepare_model(model, processor, SMALL, "sft")
    with torch.no_grad():
        find_emit_module(model).soft_prompt.weight.fill_(0.25)
    save_emit_module(model, tmp_path / "sft" / "checkpoint-4")
    with torch.no_grad():
        find_emit_module(model).soft_prompt.weight.fill_(0.5)
    save_emit_module(model, tmp_path / "grpo" / "checkpoint-2")

    fresh, processor = load(model_dirs, "qwen2_5_vl")
    prepare_model(fresh, processor, SMALL, "grpo", start=tmp_path / "sft" / "checkpoint-4")
    assert torch.all(find_emit_module(fresh).soft_prompt.weight == 0.25)
    assert all(p.requires_grad for p in fresh.parameters())  # grpo freezes nothing itself
    resumed, processor = load(model_dirs, "qwen2_5_vl")
    prepare_model(
        resumed,
        processor,
        SMALL,
        "grpo",
        start=tmp_path / "sft" / "checkpoint-4",
        resume=tmp_path / "grpo" / "checkpoint-2",
    )
    assert torch.all(find_emit_module(resumed).soft_prompt.weight == 0.5)


def test_switched_off_nothing_happens(model_dirs):
    model, processor = load(model_dirs, "qwen2_5_vl")
    off = EmitModuleSettings(enabled=False)
    assert prepare_model(model, processor, off, "sft") is model
    assert find_emit_module(model) is None
    trainer = SimpleNamespace(model=model, callback_handler=SimpleNamespace(callbacks=[]))
    prepare_trainer(trainer, off)
    assert trainer.callback_handler.callbacks == []
    with pytest.raises(ValueError, match="stage 'dpo'"):
        prepare_model(model, processor, SMALL, "dpo")


def test_prepare_trainer_unfreezes_and_adds_the_callback(model_dirs):
    model, processor = load(model_dirs, "qwen2_5_vl")
    prepare_model(model, processor, SMALL, "grpo")
    for param in model.parameters():
        param.requires_grad_(False)
    handler = SimpleNamespace(callbacks=["DoneMarker"])
    args = SimpleNamespace(use_vllm=False)
    prepare_trainer(SimpleNamespace(model=model, args=args, callback_handler=handler), SMALL)
    assert all(p.requires_grad for p in find_emit_module(model).parameters())
    # before the DONE marker: a complete checkpoint always holds the module's weights
    assert [type(c).__name__ for c in handler.callbacks] == ["EmitModuleCallback", "str"]
    vllm = SimpleNamespace(model=model, args=SimpleNamespace(use_vllm=True))
    with pytest.raises(EmitError, match="use_vllm"):
        prepare_trainer(vllm, SMALL)


def test_stage1_keeps_discrimination_and_localization():
    assert [stage1_question(t) for t in ("anomaly_detection", "defect_localization")] == [True] * 2
    assert not stage1_question("defect_description") and not stage1_question(None)
