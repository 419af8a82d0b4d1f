"""Evaluating an InternVL3 checkpoint: the transformers backend loads its processor with the
InternVL loader (chosen by the config's model_type), not the Qwen one, and answers questions
end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from eval.backends import make_backend
from eval.backends.transformers_backend import TransformersBackend, processor_loader
from eval.prompting import PromptSources, build_prompt, image_size_kwargs
from eval.protocols import Protocol
from eval.runner import RunInfo, evaluate
from eval.store import AnswerStore
from iad_pipeline.models.processors import (
    InternVLImageOnlyProcessor,
    load_internvl_processor,
    load_processor,
)
from training.tiny_internvl import build_tiny_internvl3


@pytest.fixture(scope="module")
def internvl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny InternVL3, its processor named as InternVL3-hf checkpoints name it.

    Real checkpoints name the stock ``InternVLProcessor``, which needs a video processor that
    they do not ship without torchvision; only the InternVL loader reads them image-only.
    """
    folder = build_tiny_internvl3(tmp_path_factory.mktemp("internvl") / "tiny-internvl3")
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = folder / name
        config = json.loads(path.read_text(encoding="utf-8"))
        config["processor_class"] = "InternVLProcessor"
        path.write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture
def specs_of_protocol(mini_mmad, mmad_questions: pl.DataFrame, templates):
    """One 1-shot prompt of the default protocol (MMAD's pixel bounds)."""
    return build_prompt(mmad_questions.row(0, named=True), Protocol(), templates, None, mini_mmad)


def test_the_processor_loader_follows_the_model_family():
    assert processor_loader("internvl") is load_internvl_processor
    assert processor_loader("qwen2_5_vl") is load_processor


def test_an_internvl3_checkpoint_evaluates_end_to_end(
    internvl_dir, tmp_path, mini_mmad, mmad_questions: pl.DataFrame, templates
):
    backend = make_backend(
        "transformers", model_path=internvl_dir, device="cpu", max_new_tokens=4, batch_size=2
    )
    assert isinstance(backend, TransformersBackend)
    assert isinstance(backend.processor, InternVLImageOnlyProcessor)
    questions = mmad_questions.head(2)
    answers = evaluate(
        questions,
        backend,
        AnswerStore(tmp_path / "answers"),
        run=RunInfo(str(internvl_dir), "", backend.name, Protocol()),
        sources=PromptSources(templates=templates, image_root=mini_mmad),
        batch_size=2,
        progress=False,
    )
    assert answers.height == 2
    assert answers["response"].null_count() == 0  # a (random) decoded answer per question
    assert set(answers["question_id"]) == set(questions["question_id"])


def test_pixel_bounds_apply_to_pixel_budgets_not_to_fixed_tiles(specs_of_protocol):
    spec = specs_of_protocol
    assert (spec.min_pixels, spec.max_pixels) != (None, None)  # MMAD's bounds are set

    tiles = SimpleNamespace(size={"height": 448, "width": 448})  # InternVL's image processor
    budget = SimpleNamespace(size={"shortest_edge": 1, "longest_edge": 2})  # Qwen2.5-VL's
    assert image_size_kwargs(tiles, [spec]) == {}
    assert image_size_kwargs(budget, [spec]) == {
        "size": {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    }
