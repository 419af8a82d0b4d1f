"""Providers: MMAD's released knowledge, deterministic templates, and the factory."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.knowledge.client import ChatRequest
from iad_pipeline.knowledge.generate import generate_domain_knowledge
from iad_pipeline.knowledge.providers import (
    KnowledgeProvider,
    MmadKnowledge,
    OpenAIProvider,
    ProviderError,
    TemplateProvider,
    make_provider,
)
from iad_pipeline.knowledge.text_samples import generate_text_samples
from iad_pipeline.paths import Layout
from iad_pipeline.settings import ChatConfigError, KnowledgeSettings
from iad_pipeline.synthetic import synthesize


@pytest.fixture(scope="module")
def mmad_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mmad") / "mmad"
    synthesize("mmad", root, per_class=1)
    return root


@pytest.fixture(scope="module")
def bottle(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    root = tmp_path_factory.mktemp("mvtec") / "mvtec"
    synthesize("mvtec_ad", root, per_class=1, categories=["bottle"])
    return build_samples(get_spec("mvtec_ad").scan(root), workers=1).samples


def knowledge(dataset: str, category: str, key: str) -> ChatRequest:
    return ChatRequest(("knowledge", dataset, category, key), "unused prompt")


# --- mmad ----------------------------------------------------------------------------------------

# (our dataset key or MMAD query set, category, key) -> the top-level name in the file
MAPPED = [
    ("mvtec_ad", "bottle", "broken_large", "MVTec"),
    ("DS-MVTec", "bottle", "good", "MVTec"),
    ("mvtec_loco", "breakfast_box", "logical_anomalies", "MVTec-LOCO"),
    ("MVTec-LOCO", "breakfast_box", "structural_anomalies", "MVTec-LOCO"),
    ("mvtec_loco", "breakfast_box", "good", "MVTec-LOCO"),
    ("visa", "candle", "different_colour_spot", "VisA"),
    ("goodsad", "drink_bottle", "cap_open", "GoodsAD"),
    ("GoodsAD", "drink_bottle", "good", "GoodsAD"),
]


@pytest.mark.parametrize(("dataset", "category", "key", "name"), MAPPED)
def test_mmad_maps_our_dataset_keys(mmad_root, dataset, category, key, name) -> None:
    data = json.loads((mmad_root / "domain_knowledge.json").read_text())
    provider = MmadKnowledge(mmad_root / "domain_knowledge.json")
    result = provider.complete([knowledge(dataset, category, key)]).results[0]
    assert (result.status, result.error) == ("ok", None)
    assert result.text == data[name][category][key]
    assert (result.prompt_tokens, result.completion_tokens, result.cached) == (0, 0, False)


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (knowledge("mvtec_ad", "carpet", "hole"), "no category 'carpet' under 'MVTec'"),
        (
            knowledge("visa", "candle", "bad"),
            "no 'bad' for VisA/candle; it has chunk_of_wax_missing, combined",
        ),
        (knowledge("mpdd", "tubes", "good"), "no dataset 'mpdd'"),
        (
            ChatRequest(("text", "visa", "candle", "id", "", ""), "p"),
            "only imports domain knowledge",
        ),
    ],
)
def test_mmad_says_what_it_lacks(mmad_root, request_, error) -> None:
    result = MmadKnowledge(mmad_root / "domain_knowledge.json").complete([request_]).results[0]
    assert result.status == "failed" and result.text is None
    assert error in result.error


def test_mmad_on_mmad_samples_keeps_texts_verbatim(mmad_root) -> None:
    samples = build_samples(get_spec("mmad").scan(mmad_root), workers=1).samples
    provider = MmadKnowledge(mmad_root / "domain_knowledge.json")
    result = generate_domain_knowledge(samples, provider)
    data = json.loads((mmad_root / "domain_knowledge.json").read_text())
    ok = result.table.filter(pl.col("status") == "ok")
    for row in ok.iter_rows(named=True):
        assert row["text"] == data[row["knowledge_dataset"]][row["category"]][row["key"]]
    # VisA's samples are labelled "bad"; the file names VisA's defects, so that row fails
    bad = result.table.filter(pl.col("key") == "bad").row(0, named=True)
    assert bad["status"] == "failed" and "it has chunk_of_wax_missing, combined" in bad["error"]
    assert set(result.mmad_json) == {"MVTec", "MVTec-LOCO", "VisA", "GoodsAD"}
    assert result.mmad_json["VisA"]["candle"] == {"good": data["VisA"]["candle"]["good"]}
    assert set(ok["provider"]) == {"mmad"}


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, "cannot read"),
        ("{not json", "cannot read"),
        ('{"MVTec": {"bottle": "a text"}}', "not domain knowledge"),
        ("[1, 2]", "not domain knowledge"),
    ],
)
def test_mmad_refuses_unusable_files(tmp_path, content, error) -> None:
    path = tmp_path / "domain_knowledge.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ProviderError, match=error):
        MmadKnowledge(path)


# --- template ------------------------------------------------------------------------------------


def test_template_is_deterministic_and_marked(bottle) -> None:
    first = generate_domain_knowledge(bottle, TemplateProvider())
    second = generate_domain_knowledge(bottle, TemplateProvider())
    assert_frame_equal(first.table, second.table)
    table = first.table
    assert set(table["provider"]) == {"template"} and set(table["model"]) == {"template-v1"}
    assert set(table["status"]) == {"ok"} and not table["cached"].any()
    assert table["prompt_tokens"].sum() == 0 == table["completion_tokens"].sum()
    assert table["key"].to_list() == ["broken_large", "broken_small", "contamination", "good"]
    assert first.report.requests_made == 0
    texts = dict(zip(table["key"], table["text"], strict=True))
    assert texts["broken_large"].startswith('<Broken Large Defect>\n Description: A "bottle"')
    assert texts["good"].startswith('<Normal Characteristics>\n Description: A standard "bottle"')


def test_template_text_samples_are_deterministic(bottle) -> None:
    a = generate_text_samples(bottle, TemplateProvider(), per_category=2, seed=3)
    b = generate_text_samples(bottle, TemplateProvider(), per_category=2, seed=3)
    assert_frame_equal(a.table, b.table)
    assert set(a.table["provider"]) == {"template"}
    row = a.table.filter(pl.col("defect") == "contamination").row(0, named=True)
    assert f"in the {row['location']} part of the image" in row["text"]


def test_template_refuses_unknown_keys() -> None:
    result = TemplateProvider().complete([ChatRequest(("what",), "p")]).results[0]
    assert result.status == "failed" and "unknown request key" in result.error


# --- factory -------------------------------------------------------------------------------------


def test_make_provider_builds_each_kind(mmad_root, tmp_path) -> None:
    layout = Layout(tmp_path)
    assert isinstance(
        make_provider(KnowledgeSettings(provider="template"), layout), TemplateProvider
    )
    path = str(mmad_root / "domain_knowledge.json")
    mmad = make_provider(KnowledgeSettings(provider="mmad", mmad_json=path), layout)
    assert isinstance(mmad, MmadKnowledge) and mmad.final_texts
    chat = KnowledgeSettings(provider="openai", base_url="http://127.0.0.1:9/v1", model="m")
    openai = make_provider(chat, layout)
    assert isinstance(openai, OpenAIProvider) and openai.model == "m"
    assert openai.client.settings is chat  # passed whole, down to the client
    assert openai.client.cache.root == layout.llm_cache
    for provider in (mmad, openai, TemplateProvider()):
        assert isinstance(provider, KnowledgeProvider)


def test_the_mmad_provider_defaults_to_the_installed_file(tmp_path) -> None:
    layout = Layout(tmp_path)
    with pytest.raises(ProviderError) as info:
        make_provider(KnowledgeSettings(provider="mmad"), layout)
    assert str(layout.mmad_root() / "domain_knowledge.json") in str(info.value)


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"provider": "gpt"}, "expected one of auto, openai, mmad, template"),
        ({"concurrency": 0}, "concurrency=0"),
        ({"model": ""}, "model is empty"),
        ({"text_samples_per_category": 0}, "text_samples_per_category=0"),
    ],
)
def test_bad_settings_are_refused(config, error) -> None:
    with pytest.raises(ChatConfigError, match=error):
        KnowledgeSettings(**config)


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, TemplateProvider),
        ({"OPENAI_API_KEY": "sk-x"}, OpenAIProvider),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, OpenAIProvider),
    ],
)
def test_auto_picks_by_environment(monkeypatch, caplog, tmp_path, env, kind) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.INFO, logger="iad_pipeline.knowledge.providers")
    provider = make_provider(KnowledgeSettings(model="m"), Layout(tmp_path))
    assert isinstance(provider, kind)
    assert any("knowledge provider auto" in r.getMessage() for r in caplog.records)
