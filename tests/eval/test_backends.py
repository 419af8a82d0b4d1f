"""Backends: the tiny model (generate, letter logits, shared images), a loopback OpenAI
server, and vLLM's missing-extra error."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import polars as pl
import pytest
import torch
from PIL import Image

from eval.backends import Backend, BackendError, make_backend
from eval.backends.openai_backend import OpenAIBackend, request_of
from eval.backends.transformers_backend import TransformersBackend
from eval.prompting import PromptSources, build_prompt
from eval.protocols import Protocol
from eval.runner import RunInfo, evaluate
from eval.store import AnswerStore
from tests.support.openai_server import OpenAIServer

MODEL = "test-model"


@pytest.fixture(scope="module")
def specs(mini_mmad: Path, mmad_questions: pl.DataFrame, templates) -> list:
    """Sixteen 1-shot prompts of the mini MMAD: two images' questions and part of a third."""
    rows = mmad_questions.head(16).to_dicts()
    return [build_prompt(r, Protocol(), templates, None, mini_mmad) for r in rows]


@pytest.fixture(scope="module")
def letter_backend(tiny_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(tiny_model_dir, mode="letter_logits", device="cpu")


def manual_letter(model_dir: Path, spec) -> str:
    """The best letter computed by hand: the processor, one forward pass, the letter tokens."""
    from iad_pipeline.models.processors import load_model_and_processor

    model, processor = load_model_and_processor(model_dir)
    # As MMAD renders it: vision ids, the processor built with MMAD's pixel bounds.
    text = processor.apply_chat_template(
        [{"role": "user", "content": spec.content_blocks}],
        tokenize=False,
        add_generation_prompt=True,
        add_vision_id=True,
    )
    assert text.endswith("<|im_start|>assistant\n")  # the answer position is the next token
    assert "Picture 1: <|vision_start|>" in text
    images = [Image.open(p).convert("RGB") for p in spec.images]
    size = {"shortest_edge": 64 * 28 * 28, "longest_edge": 1280 * 28 * 28}
    inputs = processor(text=[text], images=images, size=size, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**inputs).logits[0, -1]
    ids = {k: processor.tokenizer.encode(k, add_special_tokens=False) for k in spec.options}
    assert all(len(v) == 1 for v in ids.values())  # each capital letter is one token
    return max(spec.options, key=lambda k: float(logits[ids[k][0]]))


def test_transformers_backend_is_a_backend(letter_backend):
    assert isinstance(letter_backend, Backend)
    assert letter_backend.name == "transformers-letter_logits"


def test_letter_logits_answers_one_of_the_option_letters(letter_backend, specs):
    answers = letter_backend.answer(specs)
    assert len(answers) == len(specs)
    for spec, answer in zip(specs, answers, strict=True):
        assert answer in spec.options  # "A"/"B" for Yes/No questions, "A"-"D" for four options
    assert {len(s.options) for s in specs} >= {2, 4}


def test_letter_logits_match_a_hand_computed_forward_pass(tiny_model_dir, letter_backend, specs):
    for spec in (specs[0], specs[1]):
        assert letter_backend.answer([spec]) == [manual_letter(tiny_model_dir, spec)]


def test_sharing_images_changes_no_answer(tiny_model_dir, specs):
    shared = TransformersBackend(tiny_model_dir, mode="letter_logits", device="cpu")
    plain = TransformersBackend(
        tiny_model_dir, mode="letter_logits", device="cpu", share_images=False
    )
    a, b = shared.letter_scores(specs), plain.letter_scores(specs)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        assert all(abs(x[k] - y[k]) < 1e-4 for k in x)
    # Two batches of 8 questions; each batch holds few distinct images (queries + templates).
    distinct = [len({str(p) for s in specs[i : i + 8] for p in s.images}) for i in range(0, 16, 8)]
    assert shared.images.calls == distinct and max(distinct) <= 4
    assert plain.images.calls == [16, 16]  # every occurrence, two images per question


def test_generate_decodes_only_new_tokens(tiny_model_dir, specs):
    shared = TransformersBackend(tiny_model_dir, batch_size=8, max_new_tokens=3, device="cpu")
    plain = TransformersBackend(
        tiny_model_dir, batch_size=8, max_new_tokens=3, device="cpu", share_images=False
    )
    out = shared.answer(specs)
    assert len(out) == len(specs) and all(isinstance(t, str) for t in out)
    assert not any("Following is" in t or "assistant" in t for t in out)  # no prompt echoed
    assert out == plain.answer(specs)
    one = shared.answer(specs[:2], max_new_tokens=1)
    tok = shared.tokenizer
    assert all(len(tok.encode(t, add_special_tokens=False)) <= 1 for t in one)


def test_zero_shot_prompts_have_one_image(tiny_model_dir, mini_mmad, mmad_questions):
    backend = TransformersBackend(tiny_model_dir, mode="letter_logits", device="cpu")
    spec = build_prompt(mmad_questions.row(0, named=True), Protocol(shots=0), None, None, mini_mmad)
    assert len(spec.images) == 1
    assert backend.answer([spec])[0] in spec.options


def test_max_pixels_shrinks_the_image_tokens(tiny_model_dir, specs, tmp_path):
    import dataclasses

    big = tmp_path / "big.png"
    Image.new("RGB", (256, 256), (120, 80, 40)).save(big)
    backend = TransformersBackend(tiny_model_dir, mode="letter_logits")
    # MMAD's bounds (the protocol's default): 256 x 256 = 65,536 px lies within 64-1280 x 28
    # x 28, so it stays 252 x 252 after rounding to 28: 18 x 18 patches of 14.
    spec = dataclasses.replace(specs[0], images=[big, big])
    assert backend._inputs([spec])["image_grid_thw"].tolist() == [[1, 18, 18]] * 2
    # The processor's own defaults (no bounds): the tiny processor caps at 28 * 28 * 16.
    plain = dataclasses.replace(spec, min_pixels=None, max_pixels=None)
    assert backend._inputs([plain])["image_grid_thw"].tolist() == [[1, 8, 8]] * 2
    small = dataclasses.replace(spec, min_pixels=28 * 28, max_pixels=28 * 28 * 4)
    assert backend._inputs([small])["image_grid_thw"].tolist() == [[1, 4, 4]] * 2
    assert backend.answer([small])[0] in spec.options


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"mode": "sample"}, "mode"), ({"batch_size": 0}, "batch_size")],
)
def test_bad_transformers_settings_are_refused(tiny_model_dir, kwargs, match):
    with pytest.raises(BackendError, match=match):
        TransformersBackend(tiny_model_dir, **kwargs)


def test_a_missing_model_folder_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="cannot load"):
        TransformersBackend(tmp_path / "no-model")


def test_a_missing_image_names_its_path(letter_backend, specs, tmp_path):
    import dataclasses

    broken = dataclasses.replace(specs[0], images=[tmp_path / "gone.png", specs[0].images[1]])
    with pytest.raises(BackendError, match=r"gone\.png"):
        letter_backend.answer([broken])


# --- OpenAI-compatible server -------------------------------------------------------------


@pytest.fixture
def server():
    with OpenAIServer(
        MODEL, answer=lambda prompt, n: f"Looking at {n} images: the answer is B."
    ) as srv:
        yield srv


def test_request_keeps_mmads_interleaving(specs):
    request = request_of(specs[0])
    assert request.images == tuple(str(p) for p in specs[0].images)  # template, then query
    assert request.text == specs[0].text and request.interleaved
    assert request.key == (specs[0].question_id,)
    parts = request.content(["url-template", "url-query"])
    kinds = [p["type"] for p in parts]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    assert parts[0]["text"].endswith("as a template to compare the image being queried.")
    assert parts[1]["image_url"]["url"] == "url-template"
    assert parts[2]["text"] == "Following is the query image: "
    assert parts[4]["text"].startswith("Following is the question list: Question ")


def test_openai_backend_returns_parsed_answers(
    tmp_path, server, mini_mmad, mmad_questions, templates
):
    backend = OpenAIBackend(MODEL, base_url=server.base_url, cache_dir=tmp_path / "cache")
    run = RunInfo(MODEL, "", backend.name, Protocol())
    questions = mmad_questions.head(12)
    store = AnswerStore(tmp_path / "answers")
    answers = evaluate(
        questions,
        backend,
        store,
        run=run,
        sources=PromptSources(templates, image_root=mini_mmad),
        batch_size=6,
        progress=False,
    )
    assert answers.height == 12
    assert set(answers["gpt_answer"]) == {"B"} and set(answers["parsed_mmad"]) == {"B"}
    assert set(answers["response"]) == {"Looking at 2 images: the answer is B."}
    assert server.rejected() == [] and server.requests_seen == 12
    assert all(len(s.image_sizes) == 2 for s in server.seen)
    assert {tuple(s.layout) for s in server.seen} == {("text", "image", "text", "image", "text")}
    assert server.seen[0].prompt.startswith("\nYou are an industrial inspector")
    # Another run of the same questions is served from the client's cache: no request.
    again = OpenAIBackend(MODEL, base_url=server.base_url, cache_dir=tmp_path / "cache")
    assert again.answer(
        [build_prompt(questions.row(0, named=True), Protocol(), templates, None, mini_mmad)]
    ) == ["Looking at 2 images: the answer is B."]
    assert server.requests_seen == 12


def test_openai_failures_are_left_for_the_next_run(
    tmp_path, server, mini_mmad, mmad_questions, templates, caplog
):
    server.add_fault("500", when=lambda body: True)
    backend = OpenAIBackend(
        MODEL, base_url=server.base_url, cache_dir=tmp_path / "cache", max_retries=0
    )
    run = RunInfo(MODEL, "", backend.name, Protocol())
    store = AnswerStore(tmp_path / "answers")
    sources = PromptSources(templates, image_root=mini_mmad)
    kwargs = {"run": run, "sources": sources, "progress": False}
    with caplog.at_level(logging.WARNING):
        answers = evaluate(mmad_questions.head(4), backend, store, **kwargs)
    assert answers.height == 0 and "no answer" in caplog.text
    server.clear_faults()
    answers = evaluate(mmad_questions.head(4), backend, store, **kwargs)
    assert answers.height == 4


def test_openai_concurrency_is_bounded(tmp_path, server, specs):
    server.latency = 0.05
    backend = OpenAIBackend(
        MODEL, base_url=server.base_url, cache_dir=tmp_path / "cache", concurrency=3
    )
    assert len(backend.answer(specs)) == len(specs)
    assert 1 < server.max_in_flight <= 3


def test_bad_openai_settings_are_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="concurrency"):
        OpenAIBackend(MODEL, base_url="http://127.0.0.1:9/v1", cache_dir=tmp_path, concurrency=0)


# --- vLLM and the registry ------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_without_the_extra_says_how_to_install_it(tmp_path):
    from eval.backends.vllm_backend import VllmBackend

    with pytest.raises(BackendError, match=r"pip install -e '\.\[gpu\]'"):
        VllmBackend(tmp_path / "model")
    with pytest.raises(BackendError, match="vllm is not installed"):
        make_backend("vllm", model_path=tmp_path / "model")


def test_unknown_backends_list_the_valid_ones():
    with pytest.raises(BackendError, match="openai, ray, transformers, vllm"):
        make_backend("tgi")


def test_make_backend_builds_by_name(tiny_model_dir):
    backend = make_backend("transformers", model_path=tiny_model_dir, mode="letter_logits")
    assert isinstance(backend, TransformersBackend) and backend.mode == "letter_logits"
