"""The chat client against a real loopback server: retries, budget, cache, concurrency."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iad_pipeline.knowledge.cache import ResponseCache, cache_key
from iad_pipeline.knowledge.client import ChatClient, ChatConfigError, ChatRequest
from iad_pipeline.settings import ChatSettings
from tests.support.openai_server import OpenAIServer, echo_answer, prompt_of

MODEL = "test-model"


class SleepRecorder:
    """Stands in for ``time.sleep``: records the seconds, sleeps none."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def server():
    with OpenAIServer(MODEL) as srv:
        yield srv


@pytest.fixture
def make_client(tmp_path: Path, server: OpenAIServer) -> Callable[..., ChatClient]:
    sleeps = SleepRecorder()

    def make(**kw) -> ChatClient:
        settings = ChatSettings(**{"base_url": server.base_url, "model": MODEL, "timeout": 5, **kw})
        client = ChatClient(settings, tmp_path / "cache", sleep=sleeps)
        client.sleeps = sleeps  # type: ignore[attr-defined]
        return client

    return make


def requests_for(n: int, image: str | None = None) -> list[ChatRequest]:
    images = (image,) if image else ()
    return [ChatRequest(("q", str(i)), f"Describe thing number {i}.", images) for i in range(n)]


# --- answers -----------------------------------------------------------------------------------


def test_answers_come_back_in_order_with_usage(make_client, server, image) -> None:
    reqs = requests_for(5, image)
    report = make_client(concurrency=3).run(reqs)
    assert [r.request for r in report.results] == reqs
    assert [r.text for r in report.results] == [echo_answer(r.text, 1) for r in reqs]
    assert {r.status for r in report.results} == {"ok"}
    assert [r.attempts for r in report.results] == [1] * 5
    assert report.requests_made == 5 and report.cache_hits == 0 and report.failures == 0
    # usage as the server counts it: prompt words + 85 per image; answer words
    assert report.prompt_tokens == sum(len(r.text.split()) + 85 for r in reqs)
    assert report.completion_tokens == sum(r.completion_tokens for r in report.results)
    assert report.cost is None
    assert server.rejected() == []
    assert {s.image_sizes[0] for s in server.seen} == {(512, 384)}


def test_images_come_before_the_text_in_one_user_message(make_client, server, image) -> None:
    make_client().run([ChatRequest(("k",), "Look.", (image, image))])
    body = server.seen[0].body
    content = body["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url", "image_url", "text"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert prompt_of(body) == "Look."


def test_cost_from_configured_prices(make_client) -> None:
    report = make_client(price_per_1k_input=0.01, price_per_1k_output=0.03).run(requests_for(2))
    expected = report.prompt_tokens / 1000 * 0.01 + report.completion_tokens / 1000 * 0.03
    assert report.cost == pytest.approx(expected)


# --- retries -----------------------------------------------------------------------------------


def test_429_honours_retry_after(make_client, server) -> None:
    server.add_fault("429", nth=[1], retry_after=7)
    client = make_client(concurrency=1)
    report = client.run(requests_for(1))
    assert client.sleeps.calls == [7.0]
    assert report.results[0].status == "ok" and report.results[0].attempts == 2
    assert report.retries == 1 and report.requests_made == 1
    assert [s.status for s in server.seen] == [429, 200]


def test_429_without_retry_after_backs_off_with_jitter(make_client, server) -> None:
    server.add_fault("429", nth=[1, 2, 3])
    client = make_client(concurrency=1, max_retries=4)
    assert client.run(requests_for(1)).results[0].status == "ok"
    # full jitter: uniform in [0, 1], [0, 2], [0, 4] for retries 1, 2, 3
    caps = [1.0, 2.0, 4.0]
    assert len(client.sleeps.calls) == 3
    assert all(0 <= s <= cap for s, cap in zip(client.sleeps.calls, caps, strict=True))


@pytest.mark.parametrize(
    ("fault", "kw"),
    [
        ("500", {}),
        ("slow", {"delay": 1.5}),  # slower than the client's 0.3 s timeout
        ("malformed", {}),  # truncated JSON body with status 200
        ("no_choices", {}),
        ("empty", {}),
    ],
)
def test_one_fault_then_ok(make_client, server, fault, kw) -> None:
    server.add_fault(fault, nth=[1], **kw)
    client = make_client(concurrency=1, timeout=0.3)
    report = client.run(requests_for(1))
    result = report.results[0]
    assert (result.status, result.attempts, result.error) == ("ok", 2, None)
    assert result.text == echo_answer("Describe thing number 0.", 0)
    assert len(client.sleeps.calls) == 1 and report.retries == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("empty", "empty answer"),
        ("no_choices", "malformed answer: no choices"),
        ("500", "HTTP 500"),
        ("malformed", "malformed answer"),
    ],
)
def test_exhausted_retries_make_a_failure_row(make_client, server, tmp_path, fault, error):
    server.add_fault(fault, when=lambda body: "number 1" in prompt_of(body))
    client = make_client(concurrency=2, max_retries=2)
    report = client.run(requests_for(3))
    bad = report.results[1]
    assert bad.status == "failed" and bad.text is None
    assert error in bad.error and "gave up after 3 attempts" in bad.error
    assert bad.attempts == 3
    assert [r.status for r in report.results] == ["ok", "failed", "ok"]
    assert report.failures == 1 and report.retries == 2
    assert sum("number 1" in prompt_of(s.body) for s in server.seen) == 3
    # failures are not cached: the next run asks again, and succeeds
    server.clear_faults()
    again = client.run(requests_for(3))
    assert again.requests_made == 1 and again.cache_hits == 2
    assert again.results[1].status == "ok"


def test_client_errors_are_not_retried(make_client, server) -> None:
    client = make_client(model="another-model")
    result = client.run(requests_for(1)).results[0]
    assert result.status == "failed" and result.attempts == 1
    assert "HTTP 400" in result.error and "another-model" in result.error
    assert client.sleeps.calls == []


def test_connection_refused_is_retried_then_fails(tmp_path) -> None:
    with OpenAIServer(MODEL) as srv:
        url = srv.base_url  # a port nobody listens on once the server stops
    sleeps = SleepRecorder()
    client = ChatClient(
        ChatSettings(base_url=url, model=MODEL, max_retries=2, timeout=2), tmp_path, sleep=sleeps
    )
    result = client.run(requests_for(1)).results[0]
    assert result.status == "failed" and "connection error" in result.error
    assert len(sleeps.calls) == 2


def test_unreadable_image_fails_without_a_request(make_client, server, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    report = make_client().run([ChatRequest(("k",), "x", (str(broken),))])
    assert report.results[0].status == "failed"
    assert "cannot read image" in report.results[0].error
    assert server.requests_seen == 0 and report.requests_made == 0


# --- budget ------------------------------------------------------------------------------------


def test_max_requests_stops_and_keeps_rows_in_order(make_client, server) -> None:
    reqs = requests_for(10)
    report = make_client(concurrency=1, max_requests=3).run(reqs)
    assert server.requests_seen == 3 and report.requests_made == 3
    assert [r.status for r in report.results] == ["ok"] * 3 + ["skipped_budget"] * 7
    assert [r.request for r in report.results] == reqs
    assert report.budget_stopped and report.skipped == 7
    assert all(r.text is None for r in report.results[3:])


def test_max_requests_with_concurrency_never_overspends(make_client, server) -> None:
    server.latency = 0.05
    report = make_client(concurrency=4, max_requests=3).run(requests_for(10))
    assert server.requests_seen == 3
    assert sorted(r.status for r in report.results).count("skipped_budget") == 7


def test_max_tokens_stops_new_requests(make_client, server) -> None:
    # each answer costs 4 prompt words + a few answer words; one answer exceeds 5 tokens
    report = make_client(concurrency=1, max_tokens=5).run(requests_for(4))
    assert server.requests_seen == 1
    assert [r.status for r in report.results] == ["ok"] + ["skipped_budget"] * 3
    assert report.budget_stopped


def test_budget_not_reached_is_not_a_stop(make_client) -> None:
    report = make_client(max_requests=3).run(requests_for(3))
    assert not report.budget_stopped and report.skipped == 0


def test_spent_counts_against_the_budget(make_client, server) -> None:
    client = make_client(concurrency=1, max_requests=3)
    first = client.run(requests_for(2))
    second = client.run([*requests_for(4)[2:], ChatRequest(("x",), "more")], spent=first)
    assert server.requests_seen == 3
    assert [r.status for r in second.results] == ["ok", "skipped_budget", "skipped_budget"]


def test_cached_answers_are_served_after_the_budget_stops(make_client, server) -> None:
    make_client().run(requests_for(2))
    report = make_client(concurrency=1, max_requests=0).run(requests_for(3))
    assert [r.status for r in report.results] == ["ok", "ok", "skipped_budget"]
    assert server.requests_seen == 2


# --- cache -------------------------------------------------------------------------------------


def test_warm_cache_makes_zero_requests(make_client, server, image, tmp_path) -> None:
    reqs = requests_for(10, image)
    first = make_client(concurrency=4).run(reqs)
    seen = server.requests_seen
    second = make_client(concurrency=4).run(reqs)
    assert server.requests_seen == seen == 10
    assert second.requests_made == 0 and second.cache_hits == 10
    assert all(r.cached and r.attempts == 0 for r in second.results)
    assert [r.text for r in second.results] == [r.text for r in first.results]
    assert [r.prompt_tokens for r in second.results] == [r.prompt_tokens for r in first.results]
    files = sorted((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 10
    entry = json.loads(files[0].read_text())
    assert set(entry) == {"version", "text", "prompt_tokens", "completion_tokens", "written"}


def test_cache_key_covers_model_provider_text_and_image_bytes(make_client, server, image):
    make_client().run(requests_for(1, image))
    make_client(provider_name="vllm").run(requests_for(1, image))
    make_client(max_side=256).run(requests_for(1, image))  # other bytes sent
    make_client().run([ChatRequest(("q", "0"), "Describe thing number 0!", (image,))])
    assert server.requests_seen == 4
    assert server.seen[2].image_sizes == [(256, 192)]


def test_unreadable_cache_entry_is_a_miss(tmp_path) -> None:
    cache = ResponseCache(tmp_path)
    key = cache_key("openai", "m", "t")
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_text("{truncated")
    assert cache.get(key) is None


# --- concurrency -------------------------------------------------------------------------------


def test_never_more_than_concurrency_in_flight(make_client, server) -> None:
    server.latency = 0.15
    make_client(concurrency=3).run(requests_for(12))
    assert 1 < server.max_in_flight <= 3


def test_concurrency_one_is_sequential(make_client, server) -> None:
    server.latency = 0.02
    make_client(concurrency=1).run(requests_for(4))
    assert server.max_in_flight == 1


# --- configuration and image encoding -----------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"concurrency": 0},
        {"max_retries": -1},
        {"max_requests": -2},
        {"timeout": 0},
        {"model": ""},
        {"max_side": 0},
    ],
)
def test_bad_configuration_is_refused(make_client, kw) -> None:
    with pytest.raises(ChatConfigError):
        make_client(**kw)


def test_warm_cache_encodes_no_image(make_client, server, image, monkeypatch) -> None:
    import iad_pipeline.knowledge.encoding as client_module

    calls = []
    real = client_module.png_bytes

    def counting(*args, **kw):
        calls.append(args[0])
        return real(*args, **kw)

    monkeypatch.setattr(client_module, "png_bytes", counting)
    reqs = requests_for(6, image)  # one image shared by six requests
    make_client(concurrency=1).run(reqs)
    assert len(calls) == 1  # encoded once, then reused from memory
    calls.clear()
    report = make_client(concurrency=3).run(reqs)  # a new client: nothing in memory
    assert calls == [] and report.cache_hits == 6


def test_a_changed_image_is_asked_again(make_client, server, tmp_path) -> None:
    path = tmp_path / "changing.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    req = [ChatRequest(("k",), "same prompt", (str(path),))]
    make_client().run(req)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(path)
    report = make_client().run(req)
    assert report.requests_made == 1 and server.requests_seen == 2
