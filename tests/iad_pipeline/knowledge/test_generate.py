"""EMIT's knowledge and text samples, end to end against the loopback chat server."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from iad_pipeline.annotate.grid import REGIONS
from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.knowledge.client import ChatClient, KnowledgeError
from iad_pipeline.knowledge.generate import (
    KNOWLEDGE_SCHEMA,
    generate_domain_knowledge,
    knowledge_requests,
    normal_requests,
)
from iad_pipeline.knowledge.providers import OpenAIProvider, TemplateProvider
from iad_pipeline.knowledge.text_samples import (
    TEXT_SAMPLES_SCHEMA,
    generate_text_samples,
    text_sample_id,
)
from iad_pipeline.questions.prompts import (
    EMIT_DEFECT_KNOWLEDGE_PROMPT,
    EMIT_NORMAL_KNOWLEDGE_PROMPT,
    TEXT_SAMPLE_DEFECT_PROMPT,
    TEXT_SAMPLE_NORMAL_PROMPT,
)
from iad_pipeline.settings import ChatSettings
from iad_pipeline.synthetic import synthesize
from tests.support.openai_server import OpenAIServer, echo_answer, prompt_of

MODEL = "test-model"
DEFECTS = ["broken_large", "broken_small", "contamination"]


def samples_of(key: str, root: Path, **kw) -> pl.DataFrame:
    synthesize(key, root, **kw)
    spec = get_spec(key)
    return build_samples(spec.scan(root), masks_required=spec.masks_required, workers=1).samples


@pytest.fixture(scope="module")
def bottle(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    return samples_of(
        "mvtec_ad", tmp_path_factory.mktemp("mv") / "d", per_class=1, categories=["bottle"]
    )


@pytest.fixture
def server():
    with OpenAIServer(MODEL) as srv:
        yield srv


@pytest.fixture
def provider(server, tmp_path) -> OpenAIProvider:
    client = ChatClient(
        ChatSettings(base_url=server.base_url, model=MODEL, concurrency=2, max_retries=1),
        tmp_path / "cache",
        sleep=lambda s: None,
    )
    return OpenAIProvider(client)


def path_of(samples: pl.DataFrame, sample_id: str) -> str:
    return samples.filter(pl.col("sample_id") == sample_id)["image_path"][0]


# --- domain knowledge ----------------------------------------------------------------------------


def test_domain_knowledge_end_to_end(bottle, server, provider) -> None:
    result = generate_domain_knowledge(bottle, provider)
    seen = server.seen
    assert server.rejected() == []
    defect_seen = [s for s in seen if s.prompt.startswith("I am providing three images")]
    normal_seen = [s for s in seen if s.prompt.startswith("This image depicts")]
    assert len(defect_seen) == 3 and len(normal_seen) == 1 and len(seen) == 4
    assert all(len(s.image_sizes) == 3 for s in defect_seen)
    assert len(normal_seen[0].image_sizes) == 1
    # the prompts are EMIT's, with folder names filled in
    expected = {
        EMIT_DEFECT_KNOWLEDGE_PROMPT.format(object_name="bottle", anomaly_type=d) for d in DEFECTS
    }
    assert {s.prompt for s in defect_seen} == expected
    table = result.table
    assert table.schema == pl.Schema(KNOWLEDGE_SCHEMA)
    assert table["key"].to_list() == [*DEFECTS, "good"]
    assert set(table["status"]) == {"ok"} and set(table["knowledge_dataset"]) == {"MVTec"}
    # stored shape: EMIT's header, then the answer with newlines turned into spaces
    first = table.row(0, named=True)
    defect_prompt = EMIT_DEFECT_KNOWLEDGE_PROMPT.format(
        object_name="bottle", anomaly_type="broken_large"
    )
    assert first["text"] == "<Broken Large Defect>\n Description: " + echo_answer(defect_prompt, 3)
    # the normal prompt quotes the defect texts, joined by newlines
    defect_texts = "\n".join(table["text"].to_list()[:3])
    normal_prompt = EMIT_NORMAL_KNOWLEDGE_PROMPT.format(object_name="bottle", defects=defect_texts)
    assert normal_seen[0].prompt == normal_prompt
    assert table["text"][3] == "<Normal Characteristics>\n Description: " + echo_answer(
        normal_prompt, 1
    )
    # images: reference (first normal train image), defect image, its mask
    train0 = path_of(bottle, "mvtec_ad/bottle/train/good/000")
    defect = bottle.filter(pl.col("sample_id") == "mvtec_ad/bottle/test/broken_large/000").row(
        0, named=True
    )
    assert first["source_images"] == [train0, defect["image_path"], defect["mask_paths"][0]]
    assert table["source_images"][3].to_list() == [train0]
    # MMAD's shape: {dataset: {category: {defect|good: text}}}
    assert list(result.mmad_json) == ["MVTec"]
    assert result.mmad_json["MVTec"]["bottle"] == dict(
        zip(table["key"], table["text"], strict=True)
    )
    assert result.report.requests_made == 4 and not result.report.budget_stopped


def test_answers_with_newlines_are_stored_on_one_line(bottle, tmp_path) -> None:
    with OpenAIServer(MODEL, answer=lambda p, n: "Line one.\nLine two.\n\nLine three.") as srv:
        client = ChatClient(ChatSettings(base_url=srv.base_url, model=MODEL), tmp_path)
        table = generate_domain_knowledge(bottle, OpenAIProvider(client)).table
    assert (
        table["text"][0] == "<Broken Large Defect>\n Description: Line one. Line two.  Line three."
    )


def test_references_choose_the_first_image(bottle) -> None:
    train1 = path_of(bottle, "mvtec_ad/bottle/train/good/001")
    refs = {"mvtec_ad/bottle/test/contamination/000": [train1, "ignored.png"]}
    requests = {r.key[3]: r for r in knowledge_requests(bottle, references=refs)}
    assert requests["contamination"].images[0] == train1
    assert requests["broken_large"].images[0] == path_of(bottle, "mvtec_ad/bottle/train/good/000")
    assert all(r.masks == (r.images[2],) for r in requests.values())


def test_an_empty_answer_is_a_failure_row_not_knowledge(bottle, server, provider) -> None:
    server.add_fault("empty", when=lambda b: '"broken_small" defect' in prompt_of(b))
    result = generate_domain_knowledge(bottle, provider)
    row = result.table.filter(pl.col("key") == "broken_small").row(0, named=True)
    assert row["status"] == "failed" and row["text"] is None and "empty answer" in row["error"]
    assert "broken_small" not in result.mmad_json["MVTec"]["bottle"]
    assert set(result.mmad_json["MVTec"]["bottle"]) == {"broken_large", "contamination", "good"}
    normal = next(s.prompt for s in server.seen if s.prompt.startswith("This image depicts"))
    assert "<Broken Small Defect>" not in normal and "<Broken Large Defect>" in normal
    assert result.report.failures == 1


def test_a_defect_without_a_mask_gets_a_failure_row(bottle) -> None:
    unmasked = bottle.with_columns(
        mask_paths=pl.when(pl.col("label") == "contamination")
        .then(pl.lit([], dtype=pl.List(pl.String())))
        .otherwise(pl.col("mask_paths"))
    )
    assert [r.key[3] for r in knowledge_requests(unmasked)] == ["broken_large", "broken_small"]
    table = generate_domain_knowledge(unmasked, TemplateProvider()).table
    row = table.filter(pl.col("key") == "contamination").row(0, named=True)
    assert row["status"] == "failed" and "has a mask" in row["error"]
    assert row["source_images"] == []


def test_budget_is_shared_by_both_phases(bottle, server, tmp_path) -> None:
    client = ChatClient(
        ChatSettings(base_url=server.base_url, model=MODEL, concurrency=1, max_requests=3), tmp_path
    )
    result = generate_domain_knowledge(bottle, OpenAIProvider(client))
    assert server.requests_seen == 3
    assert result.table["status"].to_list() == ["ok", "ok", "ok", "skipped_budget"]
    assert result.report.budget_stopped and "good" not in result.mmad_json["MVTec"]["bottle"]


def test_warm_cache_rerun_makes_no_request(bottle, server, provider) -> None:
    first = generate_domain_knowledge(bottle, provider)
    second = generate_domain_knowledge(bottle, provider)
    assert server.requests_seen == 4
    assert second.table["cached"].all() and second.report.requests_made == 0
    assert second.mmad_json == first.mmad_json


def test_loco_index_masks_are_sent_as_visible_masks(tmp_path, server, provider) -> None:
    samples = samples_of("mvtec_loco", tmp_path / "loco", per_class=1, categories=["breakfast_box"])
    result = generate_domain_knowledge(samples, provider)
    assert result.table["key"].to_list() == ["logical_anomalies", "structural_anomalies", "good"]
    assert set(result.mmad_json) == {"MVTec-LOCO"}
    assert server.rejected() == []


def test_visa_bad_label_is_kept(tmp_path) -> None:
    samples = samples_of("visa", tmp_path / "visa", per_class=1, categories=["candle"])
    result = generate_domain_knowledge(samples, TemplateProvider())
    assert result.table["key"].to_list() == ["bad", "good"]
    assert result.table["knowledge_dataset"].to_list() == ["VisA", "VisA"]


def test_dataset_filter_and_bad_tables(bottle) -> None:
    with pytest.raises(KnowledgeError, match=r"no rows of dataset 'visa'; found \['mvtec_ad'\]"):
        generate_domain_knowledge(bottle, TemplateProvider(), dataset="visa")
    with pytest.raises(KnowledgeError, match="missing columns"):
        generate_domain_knowledge(bottle.drop("mask_paths"), TemplateProvider())
    assert (
        generate_domain_knowledge(bottle, TemplateProvider(), dataset="mvtec_ad").table.height == 4
    )


def test_empty_samples_give_empty_results() -> None:
    samples = pl.DataFrame(
        schema={
            "sample_id": pl.String(),
            "dataset": pl.String(),
            "category": pl.String(),
            "split": pl.String(),
            "label": pl.String(),
            "is_anomalous": pl.Boolean(),
            "image_path": pl.String(),
            "mask_paths": pl.List(pl.String()),
        }
    )
    result = generate_domain_knowledge(samples, TemplateProvider())
    assert result.table.height == 0 and result.mmad_json == {}
    assert generate_text_samples(samples, TemplateProvider()).table.height == 0


def test_normal_requests_quote_given_texts(bottle) -> None:
    (request,) = normal_requests(bottle, {("mvtec_ad", "bottle"): ["<A Defect>\n Description: a"]})
    assert "encounter: <A Defect>\n Description: a. Your task" in request.text
    assert len(request.images) == 1


# --- text samples --------------------------------------------------------------------------------


def test_text_samples_end_to_end(bottle, server, provider) -> None:
    result = generate_text_samples(bottle, provider, per_category=2, seed=0)
    table = result.table
    assert table.schema == pl.Schema(TEXT_SAMPLES_SCHEMA)
    # 2 train images x (3 defects + 1 normal description)
    assert table.height == 8 and server.requests_seen == 8
    assert all(len(s.image_sizes) == 1 for s in server.seen) and server.rejected() == []
    train = set(bottle.filter(pl.col("split") == "train")["image_path"])
    assert set(table["source_image"]) == train
    normal = table.filter(pl.col("defect").is_null())
    assert normal.height == 2 and normal["location"].is_null().all()
    defects = table.filter(pl.col("defect").is_not_null())
    assert set(defects["defect"]) == set(DEFECTS) and set(defects["location"]) <= set(REGIONS)
    row = defects.row(0, named=True)
    prompt = TEXT_SAMPLE_DEFECT_PROMPT.format(
        object_name="bottle", anomaly_type=row["defect"], location=row["location"]
    )
    assert row["text"] == echo_answer(prompt, 1)
    plain = TEXT_SAMPLE_NORMAL_PROMPT.format(object_name="bottle")
    assert set(normal["text"]) == {echo_answer(plain, 1)}
    assert table["text_sample_id"].n_unique() == 8
    sid = "mvtec_ad/bottle/train/good/000"
    assert text_sample_id("mvtec_ad", "bottle", sid, "", "") in set(normal["text_sample_id"])
    assert set(table["provider"]) == {"openai"} and set(table["model"]) == {MODEL}


def test_text_samples_are_seeded(bottle) -> None:
    a = generate_text_samples(bottle, TemplateProvider(), per_category=1, seed=0).table
    b = generate_text_samples(bottle, TemplateProvider(), per_category=1, seed=0).table
    assert a.equals(b)
    picks = {
        tuple(
            generate_text_samples(bottle, TemplateProvider(), per_category=1, seed=s).table[
                "location"
            ]
        )
        for s in range(6)
    }
    assert len(picks) > 1  # other seeds draw other locations


def test_observed_locations_are_used(bottle) -> None:
    locations = {("mvtec_ad", "bottle", "contamination"): ["bottom right", "bottom right"]}
    table = generate_text_samples(
        bottle, TemplateProvider(), per_category=2, locations=locations
    ).table
    assert set(table.filter(pl.col("defect") == "contamination")["location"]) == {"bottom right"}


def test_text_samples_use_train_normals_only(bottle) -> None:
    no_train = bottle.filter(pl.col("split") != "train")
    assert generate_text_samples(no_train, TemplateProvider()).table.height == 0
    with pytest.raises(KnowledgeError, match="per_category=0"):
        generate_text_samples(bottle, TemplateProvider(), per_category=0)
