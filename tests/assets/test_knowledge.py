"""Domain knowledge and text samples: offline on the demo profile, and through a real
OpenAI-compatible endpoint on 127.0.0.1 when OPENAI_BASE_URL / OPENAI_API_KEY are set."""

import json

import dagster as dg
import polars as pl
import pytest

from assets.annotations import annotations
from assets.ingest import raw_dataset, samples
from assets.knowledge import domain_knowledge, text_samples
from iad_pipeline.resources import IadConfig, KnowledgeConfig
from tests.support.openai_server import OpenAIServer

KEY = "sk-test-do-not-leak-1234567890"
MODEL = "gpt-4-turbo"


def checks_of(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    iad = IadConfig(home=str(tmp_path), profile="demo", synthetic_per_class=1)
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            [raw_dataset, samples, annotations],
            partition_key="mpdd",
            resources={"iad": iad},
            instance=instance,
        ).success
    return tmp_path, iad


def materialize(iad, knowledge=None):
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [domain_knowledge, text_samples],
            partition_key="mpdd",
            resources={
                "iad": iad,
                "knowledge": knowledge or KnowledgeConfig(text_samples_per_category=1),
            },
            instance=instance,
        )


def test_offline_demo_uses_template_texts(home) -> None:
    tmp_path, iad = home
    result = materialize(iad)
    assert result.success
    assert all(checks_of(result).values()), checks_of(result)
    meta = result.asset_materializations_for_node("domain_knowledge")[0].metadata
    assert meta["provider"].value == "template"
    assert meta["requests"].value == 0
    data = json.loads((tmp_path / "demo" / "tables" / "knowledge" / "mpdd.json").read_text())
    assert set(data) == {"mpdd"}
    tubes = data["mpdd"]["tubes"]
    assert set(tubes) == {"anomalous", "good"}
    texts = pl.read_parquet(tmp_path / "demo" / "tables" / "text_samples" / "mpdd.parquet")
    assert texts.filter(pl.col("status") == "ok")["rendered_path"].null_count() == 0


def test_with_an_endpoint_configured_the_same_assets_call_it(home, monkeypatch) -> None:
    tmp_path, iad = home
    with OpenAIServer(MODEL, api_key=KEY) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        first = materialize(iad)
        made = len(server.seen)
        second = materialize(iad)
        again = len(server.seen) - made
    assert first.success and second.success
    assert all(checks_of(first).values()), checks_of(first)
    meta = first.asset_materializations_for_node("domain_knowledge")[0].metadata
    assert meta["provider"].value == "openai"
    assert meta["requests"].value > 0
    assert made > 0
    assert again == 0  # warm cache: the second materialization asks nothing
    meta2 = second.asset_materializations_for_node("domain_knowledge")[0].metadata
    assert meta2["cache_hits"].value == meta["requests"].value
    # the API key is nowhere: not in metadata, not in any file the pipeline wrote
    for res in (first, second):
        for node in ("domain_knowledge", "text_samples"):
            for value in res.asset_materializations_for_node(node)[0].metadata.values():
                assert KEY not in str(value.value)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert KEY.encode() not in path.read_bytes(), path


def test_budget_stop_keeps_the_work_done_and_fails_the_check(home, monkeypatch) -> None:
    _, iad = home
    with OpenAIServer(MODEL, api_key=KEY) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        result = materialize(iad, KnowledgeConfig(max_requests=2, text_samples_per_category=1))
        assert len(server.seen) <= 4  # 2 per asset at most
    meta = result.asset_materializations_for_node("domain_knowledge")[0].metadata
    assert meta["budget_stopped"].value is True
    assert meta["requests"].value == 2
    assert checks_of(result)["every_category_and_defect_has_knowledge"] is False
