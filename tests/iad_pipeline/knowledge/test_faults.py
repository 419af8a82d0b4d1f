"""The chat client under hostile endpoints: an echoed key, a trickle, long Retry-After, Ctrl-C.

Every test talks to the loopback OpenAI-compatible server. Deadlines are set short through
the same settings a user has (``call_deadline``, ``retry_deadline``, ``IAD_LLM_*``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from iad_pipeline.knowledge.client import ChatClient, ChatRequest
from iad_pipeline.settings import ChatSettings
from tests.support.openai_server import OpenAIServer

MODEL = "test-model"
SECRET = "sk-echo-5ecret-KEY-0123456789abcdef"


def files_holding(root: Path, needle: str) -> list[str]:
    return [
        str(p)
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and needle.encode() in p.read_bytes()
    ]


def iad(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "iad_pipeline.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture
def installed(tmp_path) -> tuple[Path, dict[str, str]]:
    """A synthetic MVTec AD bottle installed, with its samples table, under a fresh home."""
    from iad_pipeline.synthetic import synthesize

    home = tmp_path / "home"
    synthesize("mvtec_ad", tmp_path / "src", per_class=1, categories=["bottle"])
    env = {**os.environ, "IAD_HOME": str(home), "IAD_PROFILE": "real", "COLUMNS": "300"}
    env.pop("OPENAI_BASE_URL", None)
    got = iad(
        "datasets", "fetch", "mvtec_ad", "--from", str(tmp_path / "src"), "--accept-license",
        env=env,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    got = iad("samples", "mvtec_ad", env=env)  # knowledge is generated per sampled category
    assert got.returncode == 0, got.stderr
    return home, env


def test_an_endpoint_echoing_the_key_gets_it_into_no_file_and_no_output(installed) -> None:
    home, env = installed
    env = {**env, "OPENAI_API_KEY": SECRET, "HF_TOKEN": "hf_0123456789abcdefXYZ"}
    with OpenAIServer(MODEL, api_key=SECRET, echo_authorization=True) as server:
        proc = iad(
            "-v", "knowledge", "generate", "mvtec_ad", "--provider", "openai",
            "--base-url", server.base_url, "--model", MODEL, "-q",
            env=env,
        )  # fmt: skip
        seen = server.seen
    assert proc.returncode == 0, proc.stderr
    assert seen and all(s.headers["authorization"] == f"Bearer {SECRET}" for s in seen)
    # the server did echo it: the stored answers say so, scrubbed
    assert files_holding(home / "tables" / "knowledge", "Authorization: Bearer [redacted]")
    assert files_holding(home / "cache" / "llm", "Authorization: Bearer [redacted]")
    assert files_holding(home, SECRET) == []
    assert SECRET not in proc.stdout and SECRET not in proc.stderr
    assert "DEBUG" in proc.stderr  # -v: openai's and httpx's debug logs ran, scrubbed


def test_generate_exits_non_zero_when_every_request_failed(installed) -> None:
    home, env = installed
    with OpenAIServer("the-served-model") as server:  # every request names another model
        proc = iad(
            "knowledge", "generate", "mvtec_ad", "--provider", "openai",
            "--base-url", server.base_url, "--model", MODEL, "-q",
            env=env,
        )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("iad: error: knowledge generate mvtec_ad: every request failed (")
    assert ", 100%); first error: HTTP 400" in last
    assert "failures 4 of 4 (100%)" in proc.stderr
    assert (home / "tables" / "knowledge" / "mvtec_ad.parquet").is_file()  # the errors, kept


def test_a_trickling_answer_is_cut_off_by_the_call_deadline(tmp_path) -> None:
    with OpenAIServer(MODEL) as server:
        server.add_fault("trickle", nth=[1], delay=0.05)  # about 300 bytes: 15 s in all
        settings = ChatSettings(
            base_url=server.base_url,
            model=MODEL,
            timeout=5.0,  # no single read waits that long
            call_deadline=1.0,
            max_retries=1,
        )
        client = ChatClient(settings, tmp_path, sleep=lambda s: None)
        result = client.run([ChatRequest(("k",), "hello")]).results[0]
    assert result.status == "ok" and result.attempts == 2  # cut, then answered
    assert server.seen[0].fault == "trickle"


def test_the_call_deadline_fails_the_request_when_no_retry_is_left(tmp_path, monkeypatch):
    monkeypatch.setenv("IAD_LLM_CALL_DEADLINE", "1")
    with OpenAIServer(MODEL) as server:
        server.add_fault("trickle", when=lambda body: True, delay=0.05)
        client = ChatClient(
            ChatSettings(base_url=server.base_url, model=MODEL, timeout=5.0, max_retries=0),
            tmp_path,
        )
        result = client.run([ChatRequest(("k",), "hello")]).results[0]
    assert result.status == "failed"
    assert result.error == "ran past the call deadline of 1 s (gave up after 1 attempts)"


def test_retry_after_never_stretches_a_request_past_its_retry_deadline(tmp_path) -> None:
    sleeps: list[float] = []
    with OpenAIServer(MODEL) as server:
        server.add_fault("429", when=lambda body: True, retry_after=100)
        client = ChatClient(
            ChatSettings(base_url=server.base_url, model=MODEL, max_retries=4, retry_deadline=30.0),
            tmp_path,
            sleep=sleeps.append,
        )
        result = client.run([ChatRequest(("k",), "hello")]).results[0]
    assert sleeps == []  # 100 s would pass the 30 s budget: not waited, not retried
    assert result.status == "failed" and result.attempts == 1
    assert "not retried: waiting 100.0 s would pass the deadline of 30 s" in result.error


CHILD = textwrap.dedent(
    """
    import signal, sys, tempfile
    # A test runner started in the background inherits SIGINT ignored; a terminal does not.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from iad_pipeline.knowledge.client import ChatClient, ChatRequest, ChatSettings
    settings = ChatSettings(base_url=sys.argv[1], model="test-model", concurrency=2,
                            max_retries=4)
    client = ChatClient(settings, tempfile.mkdtemp())
    try:
        client.run([ChatRequest((str(i),), f"q{i}") for i in range(6)])
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    """
)


def test_ctrl_c_during_a_backoff_is_honoured_at_once() -> None:
    with OpenAIServer(MODEL) as server:
        # Every answer asks for a 120 s pause: both workers sleep in their backoff.
        server.add_fault("429", when=lambda body: True, retry_after=120)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.base_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for _ in range(600):  # both first attempts answered (at most 60 s)
                if server.requests_seen >= 2 or child.poll() is not None:
                    break
                time.sleep(0.1)
            time.sleep(0.3)  # the workers are now in their 120 s sleep
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=20)  # without the fix: 120 s
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 130 and out.strip() == "interrupted", err
    assert server.requests_seen == 2  # no request started after Ctrl-C
