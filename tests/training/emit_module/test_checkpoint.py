"""Saving the module beside a checkpoint, loading it for evaluation, the backend using it."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

from eval.backends.transformers_backend import TransformersBackend
from eval.prompting import PromptSpec
from iad_pipeline.models.emit import (
    EMIT_WEIGHTS_NAME,
    EmitError,
    EmitModuleSettings,
    add_hint_placeholder,
    find_emit_module,
    load_emit_model,
    load_emit_module,
    save_emit_module,
)
from tests.training.emit_module.emit_helpers import FAMILIES, batch, images, with_module
from training.emit_stages import EmitModuleCallback


def trained(model_dirs, family):
    """A model with its module moved away from its initial weights (as training would)."""
    model, processor = with_module(model_dirs, family)
    with torch.no_grad():
        for param in find_emit_module(model).parameters():
            param.add_(torch.randn_like(param) * 0.5)
    find_emit_module(model).projector.norm.running_mean.fill_(0.3)
    return model.eval(), processor


def checkpoint(model_dirs, family, model, folder: Path) -> Path:
    """A checkpoint folder: the base model's files plus the module's weights."""
    shutil.copytree(model_dirs[family], folder)
    save_emit_module(model, folder)
    return folder


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_reload_round_trip(model_dirs, family, tmp_path):
    model, processor = trained(model_dirs, family)
    folder = checkpoint(model_dirs, family, model, tmp_path / "checkpoint-4")
    with safe_open(str(folder / EMIT_WEIGHTS_NAME), framework="pt") as f:
        names = set(f.keys())
    assert any("soft_prompt" in n for n in names) and any("projector" in n for n in names)
    assert "projector.norm.running_mean" in names
    loaded, info = load_emit_model(folder)
    assert info.emit and info.warning is None
    assert find_emit_module(loaded).settings == find_emit_module(model).settings
    for (name, a), b in zip(
        find_emit_module(model).state_dict().items(),
        find_emit_module(loaded).state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name
    inputs = batch(processor, hinted=(True, False))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)


def test_the_callback_writes_into_every_checkpoint(model_dirs, tmp_path):
    model, _ = trained(model_dirs, "qwen2_5_vl")
    callback = EmitModuleCallback()
    args = SimpleNamespace(output_dir=str(tmp_path / "sft"))
    for step in (2, 4):
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        callback.on_save(args, state, control=None, model=model)
    written = sorted(p.parent.name for p in (tmp_path / "sft").glob(f"*/{EMIT_WEIGHTS_NAME}"))
    assert written == ["checkpoint-2", "checkpoint-4"]
    other_rank = SimpleNamespace(global_step=6, is_world_process_zero=False)
    callback.on_save(args, other_rank, control=None, model=model)
    assert not (tmp_path / "sft" / "checkpoint-6").exists()


def test_a_run_checkpoint_without_the_weights_is_plain_with_a_warning(model_dirs, tmp_path):
    model, _ = trained(model_dirs, "internvl")
    checkpoint(model_dirs, "internvl", model, tmp_path / "run" / "checkpoint-2")
    shutil.copytree(model_dirs["internvl"], tmp_path / "run" / "checkpoint-4")
    plain, info = load_emit_model(tmp_path / "run" / "checkpoint-4")
    assert not info.emit and find_emit_module(plain) is None
    assert "no emit_module.safetensors" in info.warning
    _, base = load_emit_model(model_dirs["internvl"])  # never trained with it: no warning
    assert not base.emit and base.warning is None
    _, asked = load_emit_model(model_dirs["internvl"], expect_emit=True)
    assert asked.warning is not None


def test_mismatched_settings_are_an_error(model_dirs, tmp_path):
    model, _ = trained(model_dirs, "qwen2_5_vl")
    save_emit_module(model, tmp_path)
    other, _ = with_module(model_dirs, "qwen2_5_vl", EmitModuleSettings(heatmap_grid=6))
    with pytest.raises(EmitError, match="saved with settings"):
        load_emit_module(other, tmp_path)


def spec(tmp_path: Path, question_type: str) -> PromptSpec:
    paths = []
    for name, image in zip(("ref.png", "query.png"), images(), strict=True):
        image.save(tmp_path / name)
        paths.append(tmp_path / name)
    blocks = [
        {"type": "text", "text": "Image-1: "},
        {"type": "image"},
        {"type": "text", "text": "Image-2: "},
        {"type": "image"},
        {"type": "text", "text": "Is there any defect?\nA. Yes\nB. No\n"},
    ]
    return PromptSpec(
        question_id="q1",
        image="query.png",
        question="Is there any defect?",
        question_type=question_type,
        content_blocks=blocks,
        images=paths,
        options={"A": "Yes", "B": "No"},
        answer="A",
        text="",
        shots=1,
    )


def manual_scores(model, processor, prompt: PromptSpec, settings) -> dict[str, float]:
    content = add_hint_placeholder(
        prompt.content_blocks, task=prompt.question_type, n_images=2, settings=settings
    )
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    inputs = processor(text=[text], images=images(), return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    ids = {k: processor.tokenizer.encode(k, add_special_tokens=False)[0] for k in prompt.options}
    return {k: float(logits[i]) for k, i in ids.items()}


def test_the_transformers_backend_evaluates_with_the_module(model_dirs, tmp_path):
    model, processor = trained(model_dirs, "qwen2_5_vl")
    folder = checkpoint(model_dirs, "qwen2_5_vl", model, tmp_path / "checkpoint-8")
    backend = TransformersBackend(folder, mode="letter_logits", device="cpu")
    assert backend.emit is not None and backend.load_warnings == []
    assert not backend._pre_encoded  # the heat map needs the tower's layers: no pre-encoding
    settings = find_emit_module(model).settings
    for question_type in ("Anomaly Detection", "Defect Classification"):
        prompt = spec(tmp_path, question_type)
        got = backend.letter_scores([prompt])[0]
        want = manual_scores(model, processor, prompt, settings)
        assert got == pytest.approx(want, abs=1e-4), question_type
    plain = TransformersBackend(model_dirs["qwen2_5_vl"], mode="letter_logits", device="cpu")
    assert plain.emit is None and plain._pre_encoded
    hinted = spec(tmp_path, "Anomaly Detection")
    assert plain.letter_scores([hinted])[0] != pytest.approx(backend.letter_scores([hinted])[0])


def test_the_load_report_is_dropped_only_when_it_lists_the_module_alone() -> None:
    """Loading a module checkpoint prints no "UNEXPECTED" table for the module's own
    tensors; a report naming any other key still reaches the user."""
    import logging

    from iad_pipeline.models.emit.checkpoint import _ModuleKeysReport

    def record(*keys: str) -> logging.LogRecord:
        rows = "\n".join(f"{k} | UNEXPECTED |  | " for k in keys)
        text = f"Qwen LOAD REPORT from: x\nKey | Status |  | \n---+---\n{rows}\nNotes:\n- x"
        return logging.LogRecord("transformers", logging.WARNING, "", 0, text, None, None)

    quiet = _ModuleKeysReport()
    assert not quiet.filter(record("model.language_model.emit.soft_prompt.weight"))
    assert quiet.filter(
        record("model.language_model.emit.soft_prompt.weight", "model.visual.blocks.0.w")
    )
    plain = logging.LogRecord("t", logging.WARNING, "", 0, "something else", None, None)
    assert quiet.filter(plain)
