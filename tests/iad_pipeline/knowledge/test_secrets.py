"""The API key goes to the server's Authorization header and nowhere else.

Every check searches for the key string itself: log records at DEBUG (ours, openai's,
httpx's), cache files, result tables (as written to disk), reports and reprs. Images are
never logged as base64 either.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.knowledge.client import ChatClient, ChatRequest
from iad_pipeline.knowledge.generate import generate_domain_knowledge
from iad_pipeline.knowledge.providers import OpenAIProvider, make_provider
from iad_pipeline.paths import Layout
from iad_pipeline.settings import ChatSettings, KnowledgeSettings
from iad_pipeline.synthetic import synthesize
from tests.support.openai_server import OpenAIServer, prompt_of

SECRET = "sk-test-5ecret-KEY-0123456789abcdef"
MODEL = "test-model"
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}")


def _texts_of(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args)]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append(repr(record.exc_info[1]))
    return "\n".join(parts)


@pytest.fixture
def bottle(tmp_path: Path):
    root = tmp_path / "mvtec"
    synthesize("mvtec_ad", root, per_class=1, categories=["bottle"])
    return build_samples(get_spec("mvtec_ad").scan(root), workers=1).samples


def test_key_only_in_the_authorization_header(monkeypatch, caplog, tmp_path, bottle) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    caplog.set_level(logging.DEBUG)
    with OpenAIServer(MODEL, api_key=SECRET) as server:
        # a mix of outcomes, so every log path runs: retries, an exhausted failure, a budget
        server.add_fault("429", nth=[1], retry_after=0)
        server.add_fault("500", nth=[2])
        server.add_fault("empty", when=lambda b: "contamination" in prompt_of(b))
        client = ChatClient(
            ChatSettings(
                base_url=server.base_url,
                model=MODEL,
                max_retries=2,  # one request may meet both injected faults
                concurrency=2,
            ),
            tmp_path / "cache",
            sleep=lambda s: None,
        )
        result = generate_domain_knowledge(bottle, OpenAIProvider(client))
        extra = client.run([ChatRequest(("x",), "again")] * 3)
        bad_model = ChatClient(
            ChatSettings(base_url=server.base_url, model="wrong", max_retries=0), tmp_path / "c2"
        )
        refused = bad_model.run([ChatRequest(("y",), "refused")])
        seen = server.seen
    # the key was really used ...
    assert all(s.headers.get("authorization") == f"Bearer {SECRET}" for s in seen)
    assert [s.body["model"] for s in server.rejected()] == ["wrong"]
    assert result.table["status"].to_list() == ["ok", "ok", "failed", "ok"]
    assert refused.results[0].status == "failed"
    # ... and appears nowhere else
    logs = "\n".join(_texts_of(r) for r in caplog.records)
    assert caplog.records and SECRET not in logs
    assert not BASE64_RUN.search(logs), "base64 image data in the logs"
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text()
    written = tmp_path / "knowledge.parquet"
    result.table.write_parquet(written)
    assert SECRET.encode() not in written.read_bytes()
    result.table.write_ndjson(tmp_path / "knowledge.jsonl")
    assert SECRET not in (tmp_path / "knowledge.jsonl").read_text()
    for thing in (result.report, extra, refused, result.mmad_json, client, bad_model):
        assert SECRET not in repr(thing)
    assert SECRET not in repr(vars(client).get("cache"))


def test_without_a_key_a_placeholder_is_sent(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAIServer(MODEL) as server:
        client = ChatClient(ChatSettings(base_url=server.base_url, model=MODEL), tmp_path)
        report = client.run([ChatRequest(("k",), "hello")])
        assert report.results[0].status == "ok"
        assert server.seen[0].headers["authorization"] == "Bearer not-needed"


def test_a_server_quoting_the_key_in_its_error_is_scrubbed(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with OpenAIServer(MODEL, api_key="sk-the-right-one", leaky_errors=True) as server:
        client = ChatClient(ChatSettings(base_url=server.base_url, model=MODEL), tmp_path)
        result = client.run([ChatRequest(("k",), "hello")]).results[0]
    assert result.status == "failed" and "HTTP 400" in result.error
    assert "Authorization: Bearer [redacted]" in result.error
    assert SECRET not in result.error and SECRET not in "\n".join(
        _texts_of(r) for r in caplog.records
    )
    assert list(tmp_path.rglob("*.json")) == []


def test_base_url_from_the_environment(monkeypatch, tmp_path) -> None:
    image = tmp_path / "i.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    with OpenAIServer(MODEL) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        provider = make_provider(KnowledgeSettings(model=MODEL), Layout(tmp_path))
        assert isinstance(provider, OpenAIProvider)
        report = provider.complete([ChatRequest(("k",), "hello", (str(image),))])
        assert report.results[0].status == "ok" and server.requests_seen == 1
