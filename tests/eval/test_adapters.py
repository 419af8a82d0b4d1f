"""LoRA checkpoints evaluate as their base with the adapter merged; mismatches are refused."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from eval.adapters import AdapterMismatchError, merged_model_dir, model_path
from eval.backends.transformers_backend import TransformersBackend
from eval.prompting import build_prompt
from eval.protocols import Protocol
from iad_pipeline.models.processors import load_model_and_processor

TARGETS = ["q_proj", "v_proj"]


def save_adapter(base_dir: Path, out: Path, *, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) B matrices, as a trained one would have."""
    torch.manual_seed(seed)
    model, _ = load_model_and_processor(base_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def specs(mini_mmad: Path, mmad_questions: pl.DataFrame, templates) -> list:
    rows = mmad_questions.head(6).to_dicts()
    return [build_prompt(r, Protocol(), templates, None, mini_mmad) for r in rows]


def test_a_lora_checkpoint_evaluates_like_its_base_with_the_adapter_applied(
    tiny_model_dir: Path, tmp_path: Path, specs
) -> None:
    checkpoint = save_adapter(tiny_model_dir, tmp_path / "run" / "checkpoint-2", seed=1)
    evaluated = TransformersBackend(model_path(checkpoint), mode="letter_logits", device="cpu")

    base, processor = load_model_and_processor(tiny_model_dir)
    unmerged = PeftModel.from_pretrained(base, str(checkpoint))  # the adapter, not merged
    reference = TransformersBackend.from_loaded(
        unmerged, processor, model_name="reference", mode="letter_logits"
    )
    plain_model, plain_processor = load_model_and_processor(tiny_model_dir)
    plain = TransformersBackend.from_loaded(
        plain_model, plain_processor, model_name="base", mode="letter_logits"
    )

    got, want, without = (b.letter_scores(specs) for b in (evaluated, reference, plain))
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        assert all(g[k] == pytest.approx(w[k], abs=1e-4) for k in g)
    # the adapter changed the model: the base alone scores differently
    assert any(abs(g[k] - b[k]) > 1e-3 for g, b in zip(got, without, strict=True) for k in g)


def test_a_retrained_adapter_is_merged_again_not_taken_from_the_cache(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "run" / "checkpoint-4"
    first = merged_model_dir(save_adapter(tiny_model_dir, checkpoint, seed=1))
    assert merged_model_dir(checkpoint) == first  # unchanged: merged once
    second = merged_model_dir(save_adapter(tiny_model_dir, checkpoint, seed=2))
    assert second != first
    a, b = (load_file(str(p / "model.safetensors")) for p in (first, second))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_a_full_model_checkpoint_is_evaluated_as_it_is(tiny_model_dir: Path) -> None:
    assert merged_model_dir(tiny_model_dir) == tiny_model_dir


def test_an_adapter_of_another_shape_fails_naming_the_checkpoint_and_base(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    checkpoint = save_adapter(tiny_model_dir, tmp_path / "checkpoint-2", seed=1)
    weights = checkpoint / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k in tensors if "lora_A" in k)
    tensors[name] = torch.zeros(tensors[name].shape[0], tensors[name].shape[1] + 3)
    save_file(tensors, str(weights))
    with pytest.raises(AdapterMismatchError, match=r"checkpoint-2: the adapter does not fit"):
        merged_model_dir(checkpoint)
    assert not (tmp_path / "merged").exists()  # nothing half-written left behind


def test_an_adapter_for_modules_the_base_lacks_fails(tiny_model_dir: Path, tmp_path: Path) -> None:
    checkpoint = save_adapter(tiny_model_dir, tmp_path / "checkpoint-2", seed=1)
    weights = checkpoint / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    tensors = {k.replace("layers.0.", "layers.97."): v for k, v in tensors.items()}
    save_file(tensors, str(weights))
    with pytest.raises(AdapterMismatchError, match=r"match no module of base model"):
        merged_model_dir(checkpoint)


def test_an_adapter_whose_base_is_missing_fails(tiny_model_dir: Path, tmp_path: Path) -> None:
    checkpoint = save_adapter(tiny_model_dir, tmp_path / "checkpoint-2", seed=1)
    config = checkpoint / "adapter_config.json"
    config.write_text(config.read_text().replace(str(tiny_model_dir), str(tmp_path / "gone")))
    with pytest.raises(AdapterMismatchError, match=r"cannot load its base model"):
        merged_model_dir(checkpoint)
