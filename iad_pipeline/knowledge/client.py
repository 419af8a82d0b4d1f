"""Chat requests to an OpenAI-compatible server: cache, bounded concurrency, retries, budget.

:class:`ChatClient` sends :class:`ChatRequest` s (a prompt text and image paths) through the
real ``openai.OpenAI`` client and returns one :class:`ChatResult` per request, in order, in a
:class:`RunReport`:

- **Secrets**: the API key comes only from the ``OPENAI_API_KEY`` environment variable (a
  local vLLM or Ollama server needs none; a placeholder is passed so the client constructs).
  It is never logged, cached or put in a result: every text that is stored, logged or
  returned (answers too, since an endpoint may echo the ``Authorization`` header) is
  scrubbed of the environment's secret values and of base64 image data
  (:mod:`~iad_pipeline.knowledge.secrets`), and so is every log record of the process.
- **Deadlines**: each attempt has a total deadline (``call_deadline``, however slowly the
  server trickles bytes), and each request with all its retries and backoff sleeps one more
  (``retry_deadline``; a ``Retry-After`` that would pass it ends the request as failed).
  Ctrl-C stops the run within about a second: backoff sleeps wait on an event, reads are
  sliced (:mod:`~iad_pipeline.knowledge.transport`), queued requests are cancelled.
- **Messages**: one user message, the images as ``image_url`` parts (PNG data URLs, long side
  at most ``max_side``, see :mod:`~iad_pipeline.knowledge.images`) followed by the text; or,
  for a request with ``interleaved=True``, text and images in the order of the text's
  ``<image>`` markers (an evaluation protocol's order); a ``system`` prompt goes first.
- **Concurrency**: a pool of ``concurrency`` threads, so never more requests in flight.
- **Retries** (the openai client's own are disabled, so these are the only ones): on 429
  (``Retry-After`` honoured, up to :data:`MAX_RETRY_AFTER` seconds), 408, 409, 5xx, timeouts
  and connection errors, and on an answer that is malformed (undecodable body, no choices,
  non-string content) or empty; exponential backoff with full jitter otherwise. After
  ``max_retries`` retries the request becomes a ``failed`` row whose error says what went
  wrong; other 4xx fail at once. A failed row never carries text.
- **Cache**: answers are cached on disk by provider, model, text and image bytes as sent
  (:mod:`~iad_pipeline.knowledge.cache`); a re-run with a warm cache makes no request and
  encodes no image (the digests of the bytes sent are remembered by file stamp). Failures
  are not cached.
- **Budget**: ``max_requests`` (requests started; the retries of a started request are not
  counted again) and ``max_tokens`` (prompt plus completion tokens from the answers' usage).
  Once either is reached no new request starts; requests in flight finish (so ``max_tokens``
  can be overshot by at most ``concurrency`` answers); the rest become ``skipped_budget``
  rows. Cached answers are free and are still served after the stop.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import openai
from tqdm.auto import tqdm

from iad_pipeline import limits
from iad_pipeline.annotate.boxes import MaskError
from iad_pipeline.errors import IadError
from iad_pipeline.knowledge.cache import (
    CachedAnswer,
    ResponseCache,
    cache_key,
    image_digest,
    source_stamp,
)
from iad_pipeline.knowledge.images import MAX_SIDE, ImageEncodeError, png_bytes, to_data_url
from iad_pipeline.knowledge.secrets import Scrubber, scrub_logs, secret_values
from iad_pipeline.knowledge.transport import call_limits, deadline_http_client
from iad_pipeline.retry import retry_after_seconds

log = logging.getLogger(__name__)

# The image marker of interleaved requests (prompts.IMAGE_PLACEHOLDER).
IMAGE_MARKER = "<image>"

Status = Literal["ok", "failed", "skipped_budget"]
STATUSES: tuple[str, ...] = ("ok", "failed", "skipped_budget")
# Placeholder key for servers that need none (the openai client refuses to construct without).
NO_KEY = "not-needed"
# The longest Retry-After we honour; a server asking for more gets this.
MAX_RETRY_AFTER = 300.0
BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
RETRY_STATUSES = frozenset({408, 409, 429})
# Encoded images kept in memory: a request's images are encoded once for the cache key and
# reused for sending, and images shared by neighbouring requests are not encoded again.
ENCODED_IN_MEMORY = 32
_WAKE = 0.2  # seconds between two checks for Ctrl-C while requests run


class KnowledgeError(IadError):
    """Base class of the knowledge package's errors."""


class ChatConfigError(KnowledgeError, ValueError):
    """A chat client configured with values it cannot run with."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat request: a stable ``key`` naming it, the prompt text and image paths.

    ``images`` are sent in order before the text; those also listed in ``masks`` are
    binarised to 0/255 before sending (see :func:`~iad_pipeline.knowledge.images.png_bytes`).
    """

    key: tuple[str, ...]
    text: str
    images: tuple[str, ...] = ()
    masks: tuple[str, ...] = ()
    interleaved: bool = False
    system: str | None = None

    def content(self, urls: Sequence[str]) -> list[dict[str, Any]]:
        """The user message's parts, given one data URL per image.

        Without ``interleaved``: every image, then the text. With it: the text is cut at its
        ``<image>`` markers and image ``i`` goes where marker ``i`` was.

        >>> ChatRequest(("k",), "a <image> b", ("x.png",), interleaved=True).content(["u"])
        [{'type': 'text', 'text': 'a '}, {'type': 'image_url', 'image_url': {'url': 'u'}}, \
{'type': 'text', 'text': ' b'}]
        """
        images = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
        if not self.interleaved:
            return [*images, {"type": "text", "text": self.text}]
        pieces = self.text.split(IMAGE_MARKER)
        if len(pieces) != len(images) + 1:
            msg = (
                f"request {self.key}: {len(pieces) - 1} {IMAGE_MARKER!r} markers for "
                f"{len(images)} images; expected one marker per image"
            )
            raise ChatConfigError(msg)
        parts: list[dict[str, Any]] = []
        for i, piece in enumerate(pieces):
            if i:
                parts.append(images[i - 1])
            if piece:
                parts.append({"type": "text", "text": piece})
        return parts

    def cache_text(self) -> str:
        """The text the cache key is made of: the text, and the layout and system if set."""
        if not self.interleaved and self.system is None:
            return self.text
        return f"{self.text}\x00interleaved={self.interleaved}\x00system={self.system}"


@dataclass(frozen=True)
class ChatResult:
    """The outcome of one request; ``text`` is set only when ``status == "ok"``."""

    request: ChatRequest
    text: str | None
    error: str | None
    cached: bool
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    status: Status


@dataclass(frozen=True)
class RunReport:
    """Results (in request order) and what the run spent.

    ``requests_made`` counts requests started (not retries), ``retries`` the extra attempts;
    tokens count only the requests made by this run (a cached result keeps its original
    usage in its row but costs nothing now); ``cost`` is ``None`` without prices.
    """

    results: tuple[ChatResult, ...]
    requests_made: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    budget_stopped: bool = False
    failures: int = 0
    retries: int = 0
    skipped: int = 0

    def merge(self, other: RunReport) -> RunReport:
        """Both runs' results and sums (``cost`` stays ``None`` only if both are).

        >>> a = RunReport((), requests_made=2, cost=0.5)
        >>> b = RunReport((), requests_made=1, budget_stopped=True)
        >>> m = a.merge(b)
        >>> m.requests_made, m.cost, m.budget_stopped
        (3, 0.5, True)
        """
        cost = None
        if self.cost is not None or other.cost is not None:
            cost = (self.cost or 0.0) + (other.cost or 0.0)
        return RunReport(
            self.results + other.results,
            self.requests_made + other.requests_made,
            self.cache_hits + other.cache_hits,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            cost,
            self.budget_stopped or other.budget_stopped,
            self.failures + other.failures,
            self.retries + other.retries,
            self.skipped + other.skipped,
        )

    def summary(self) -> dict[str, Any]:
        """The counts as plain values (for logs and asset metadata)."""
        return {
            "results": len(self.results),
            "requests_made": self.requests_made,
            "cache_hits": self.cache_hits,
            "failures": self.failures,
            "skipped_budget": self.skipped,
            "retries": self.retries,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "budget_stopped": self.budget_stopped,
        }


def build_report(
    results: Sequence[ChatResult],
    *,
    requests_made: int = 0,
    retries: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost: float | None = None,
    budget_stopped: bool = False,
) -> RunReport:
    """A :class:`RunReport` whose hit, failure and skip counts come from ``results``."""
    return RunReport(
        tuple(results),
        requests_made=requests_made,
        cache_hits=sum(r.cached for r in results),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=cost,
        budget_stopped=budget_stopped,
        failures=sum(r.status == "failed" for r in results),
        retries=retries,
        skipped=sum(r.status == "skipped_budget" for r in results),
    )


def failed(request: ChatRequest, error: str, attempts: int = 0) -> ChatResult:
    """A ``failed`` result that never carries text."""
    return ChatResult(request, None, error, False, attempts, 0, 0, "failed")


@dataclass
class _Budget:
    """Thread-safe counters of one run against the limits."""

    max_requests: int | None
    max_tokens: int | None
    started: int = 0
    tokens: int = 0
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def try_start(self) -> bool:
        with self.lock:
            over_requests = self.max_requests is not None and self.started >= self.max_requests
            over_tokens = self.max_tokens is not None and self.tokens >= self.max_tokens
            if over_requests or over_tokens:
                self.stopped = True
                return False
            self.started += 1
            return True

    def release(self) -> None:
        """Give back a start that sent nothing."""
        with self.lock:
            self.started -= 1

    def spend(self, tokens: int) -> None:
        with self.lock:
            self.tokens += tokens


@dataclass
class _Tally:
    """What the run spent (every attempt's usage counts, including empty answers)."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *, requests: int = 0, retries: int = 0, prompt: int = 0, completion: int = 0):
        with self.lock:
            self.requests += requests
            self.retries += retries
            self.prompt_tokens += prompt
            self.completion_tokens += completion


def _answer_text(response: Any) -> tuple[str | None, str]:
    """The answer text of a completion, or ``None`` and why it is unusable."""
    choices = getattr(response, "choices", None)
    if not choices:
        return None, "malformed answer: no choices"
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        return None, f"malformed answer: message content is {type(content).__name__}, not text"
    if not content.strip():
        return None, "empty answer: the message content is empty"
    return content.strip(), ""


def _usage(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
    )


class ChatClient:
    """Send chat requests with a cache, bounded concurrency, retries and a budget.

    Args:
        base_url: The server's ``/v1`` URL; ``None`` reads ``OPENAI_BASE_URL`` (else OpenAI).
        model: The model name sent with every request.
        cache_dir: Folder of the response cache.
        concurrency: Requests in flight at most.
        timeout: Seconds to wait for the connection and for each read (a whole attempt is
            bounded by ``call_deadline``).
        max_retries: Retries after the first attempt.
        max_requests: Requests this run may start (``None``: no limit).
        max_tokens: Prompt plus completion tokens this run may spend (``None``: no limit).
        price_per_1k_input: Price of 1,000 prompt tokens (for ``RunReport.cost``).
        price_per_1k_output: Price of 1,000 completion tokens.
        provider_name: Part of the cache key (``openai`` for any OpenAI-compatible server).
        sleep: Called with the backoff seconds (tests pass a recorder); ``None`` waits on
            the client's stop event, so Ctrl-C ends a backoff at once.
        max_side: Longest image side sent, in pixels (EMIT: 512).
        seed: Seed of the backoff jitter.
        call_deadline: Seconds one attempt may take in total (``None``:
            ``IAD_LLM_CALL_DEADLINE``, see :mod:`iad_pipeline.limits`).
        retry_deadline: Seconds one request may take with all its retries (``None``:
            ``IAD_LLM_RETRY_DEADLINE``).

    Raises:
        ChatConfigError: A limit or count that is not positive.
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        model: str,
        cache_dir: Path | str,
        concurrency: int = 8,
        timeout: float = 60,
        max_retries: int = 4,
        max_requests: int | None = None,
        max_tokens: int | None = None,
        price_per_1k_input: float | None = None,
        price_per_1k_output: float | None = None,
        provider_name: str = "openai",
        sleep: Callable[[float], None] | None = None,
        max_side: int = MAX_SIDE,
        seed: int | None = None,
        call_deadline: float | None = None,
        retry_deadline: float | None = None,
    ) -> None:
        checks = {
            "concurrency": (concurrency, 1),
            "max_retries": (max_retries, 0),
            "max_requests": (max_requests, 0),
            "max_tokens": (max_tokens, 0),
            "max_side": (max_side, 1),
        }
        for name, (value, low) in checks.items():
            if value is not None and (not isinstance(value, int) or value < low):
                msg = f"ChatClient: {name}={value!r}; expected an integer >= {low}"
                raise ChatConfigError(msg)
        if not timeout or timeout <= 0:
            msg = f"ChatClient: timeout={timeout!r}; expected seconds > 0"
            raise ChatConfigError(msg)
        if not model:
            msg = "ChatClient: model is empty; pass the model name the server serves"
            raise ChatConfigError(msg)
        call_deadline = limits.llm_call_deadline() if call_deadline is None else call_deadline
        if retry_deadline is None:
            retry_deadline = limits.llm_retry_deadline()
        for name, value in (("call_deadline", call_deadline), ("retry_deadline", retry_deadline)):
            if not value > 0:
                msg = f"ChatClient: {name}={value!r}; expected seconds > 0"
                raise ChatConfigError(msg)
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.model = model
        self.cache = ResponseCache(cache_dir)
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.price_per_1k_input = price_per_1k_input
        self.price_per_1k_output = price_per_1k_output
        self.provider_name = provider_name
        self.max_side = max_side
        self.call_deadline = float(call_deadline)
        self.retry_deadline = float(retry_deadline)
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._rng = random.Random(seed)
        self._encoded: OrderedDict[tuple[str, bool, str | None], bytes] = OrderedDict()
        self._encoded_lock = threading.Lock()
        # Read once, kept only inside the openai client and a scrubber; never an attribute
        # that a repr, a log or a pickle would show.
        secret = os.environ.get("OPENAI_API_KEY") or ""
        secrets = {*secret_values(), *([secret] if secret else [])}
        self._scrub = Scrubber(sorted(secrets, key=len, reverse=True))
        scrub_logs(secrets)
        try:
            http_client = deadline_http_client(self.timeout)
        except RuntimeError as exc:  # an httpx this code does not know: per-read timeouts only
            log.warning("no total deadline per LLM call (%s)", exc)
            http_client = None
        self._client = openai.OpenAI(
            api_key=secret or NO_KEY,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.timeout,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return (
            f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, "
            f"concurrency={self.concurrency}, cache_dir={str(self.cache.root)!r})"
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """Price of the tokens, or ``None`` when no price is configured (a missing one is 0).

        >>> import tempfile
        >>> c = ChatClient(base_url="http://127.0.0.1:9/v1", model="m",
        ...                cache_dir=tempfile.mkdtemp(), price_per_1k_input=0.01,
        ...                price_per_1k_output=0.03)
        >>> round(c.cost(2000, 1000), 6)
        0.05
        """
        if self.price_per_1k_input is None and self.price_per_1k_output is None:
            return None
        return prompt_tokens / 1000 * (
            self.price_per_1k_input or 0.0
        ) + completion_tokens / 1000 * (self.price_per_1k_output or 0.0)

    def run(
        self,
        requests: Iterable[ChatRequest],
        progress: bool = False,
        *,
        spent: RunReport | None = None,
    ) -> RunReport:
        """Answer ``requests``; results keep their order.

        ``spent``: an earlier run whose requests and tokens count against this run's budget
        (a two-phase job shares one budget this way).
        """
        requests = list(requests)
        budget = _Budget(self.max_requests, self.max_tokens)
        if spent is not None:
            budget.started = spent.requests_made
            budget.tokens = spent.prompt_tokens + spent.completion_tokens
        tally = _Tally()
        results: list[ChatResult | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc="chat", unit="req", disable=not progress)
        workers = max(1, min(self.concurrency, len(requests)))
        self._stop.clear()
        pool = ThreadPoolExecutor(workers, thread_name_prefix="chat")
        try:
            finished: queue.SimpleQueue[Future[ChatResult]] = queue.SimpleQueue()
            futures: dict[Future[ChatResult], int] = {}
            for i, r in enumerate(requests):
                future = pool.submit(self._one, r, budget, tally)
                futures[future] = i
                future.add_done_callback(finished.put)
            for _ in range(len(futures)):
                while True:
                    # Short waits: a signal may land in a worker thread, and Python runs its
                    # handler (KeyboardInterrupt) only when the main thread wakes up.
                    try:
                        future = finished.get(timeout=_WAKE)
                        break
                    except queue.Empty:
                        continue
                results[futures[future]] = future.result()
                bar.update(1)
        except BaseException:
            # Ctrl-C (or an error): queued requests never start, sleeping ones wake up, reads
            # in flight give up within a slice; then the interruption goes on up.
            self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
            bar.close()
        done = [r for r in results if r is not None]
        report = build_report(
            done,
            requests_made=tally.requests,
            retries=tally.retries,
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
            cost=self.cost(tally.prompt_tokens, tally.completion_tokens),
            budget_stopped=budget.stopped,
        )
        log.info(
            "chat %s: %d requests: %d made, %d cached, %d failed, %d skipped (budget), "
            "%d retries, %d prompt + %d completion tokens",
            self.model,
            len(done),
            report.requests_made,
            report.cache_hits,
            report.failures,
            report.skipped,
            report.retries,
            report.prompt_tokens,
            report.completion_tokens,
        )
        if report.budget_stopped:
            log.warning(
                "chat %s: budget reached (max_requests=%s, max_tokens=%s); %d requests skipped",
                self.model,
                self.max_requests,
                self.max_tokens,
                report.skipped,
            )
        return report

    def _encode(self, path: str, mask: bool, stamp: str | None) -> bytes:
        """The PNG bytes sent for ``path`` (from a small in-memory LRU when possible)."""
        memo = (path, mask, stamp)
        with self._encoded_lock:
            if stamp is not None and memo in self._encoded:
                self._encoded.move_to_end(memo)
                return self._encoded[memo]
        png = png_bytes(path, self.max_side, mask=mask)
        with self._encoded_lock:
            self._encoded[memo] = png
            while len(self._encoded) > ENCODED_IN_MEMORY:
                self._encoded.popitem(last=False)
        return png

    def _digest(self, path: str, mask: bool, stamp: str | None) -> str:
        """The digest of the bytes that would be sent, remembered across runs by file stamp."""
        known = self.cache.image_digest(stamp) if stamp else None
        if known is not None:
            return known
        digest = image_digest(self._encode(path, mask, stamp))
        if stamp is not None:
            try:
                self.cache.put_image_digest(stamp, digest)
            except OSError as exc:
                log.warning("%s: cannot remember the image digest (%s)", path, exc)
        return digest

    def _one(self, request: ChatRequest, budget: _Budget, tally: _Tally) -> ChatResult:
        if request.interleaved and request.text.count(IMAGE_MARKER) != len(request.images):
            why = f"{request.text.count(IMAGE_MARKER)} {IMAGE_MARKER!r} markers"
            return failed(request, f"{why} for {len(request.images)} images; expected one each")
        masks = [p in request.masks for p in request.images]
        images = [
            (p, m, source_stamp(p, self.max_side, m))
            for p, m in zip(request.images, masks, strict=True)
        ]
        try:
            digests = [self._digest(*image) for image in images]
        except (ImageEncodeError, MaskError) as exc:
            return failed(request, f"image not sent: {exc}")
        key = cache_key(self.provider_name, self.model, request.cache_text(), digests)
        hit = self.cache.get(key)
        if hit is not None:  # scrubbed again: the entry may predate a secret's scrubbing
            return ChatResult(
                request,
                self._scrub(hit.text),
                None,
                True,
                0,
                hit.prompt_tokens,
                hit.completion_tokens,
                "ok",
            )
        if not budget.try_start():
            return ChatResult(request, None, "budget reached", False, 0, 0, 0, "skipped_budget")
        try:
            pngs = [self._encode(*image) for image in images]
        except (ImageEncodeError, MaskError) as exc:  # the file changed since its digest
            budget.release()
            return failed(request, f"image not sent: {exc}")
        sent = [image_digest(png) for png in pngs]
        if sent != digests:  # the file changed under us: key the answer by what was sent
            key = cache_key(self.provider_name, self.model, request.cache_text(), sent)
        tally.add(requests=1)
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": request.content([to_data_url(png) for png in pngs])}
        ]
        if request.system is not None:
            messages.insert(0, {"role": "system", "content": request.system})
        result = self._ask(request, messages, budget, tally)
        if result.status == "ok" and result.text is not None:
            answer = CachedAnswer(result.text, result.prompt_tokens, result.completion_tokens)
            try:
                self.cache.put(key, answer)
            except OSError as exc:  # the answer is still good; only the next run pays again
                log.warning("%s: cannot write cache entry (%s)", self.cache.path(key), exc)
        return result

    def _ask(
        self, request: ChatRequest, messages: list[dict], budget: _Budget, tally: _Tally
    ) -> ChatResult:
        """One request with retries; never raises for what the server or network does."""
        prompt = completion = 0
        error = ""
        started = time.monotonic()
        last = self.retry_deadline + started  # the whole request, retries included
        attempts = 0
        for attempt in range(1, self.max_retries + 2):
            attempts = attempt
            if self._stop.is_set():
                error = "interrupted"
                break
            wait: float | None = None
            deadline = min(time.monotonic() + self.call_deadline, last)
            try:
                with call_limits(deadline, self._stop):
                    response = self._client.chat.completions.create(
                        model=self.model, messages=messages
                    )
            except openai.APIStatusError as exc:
                status = exc.status_code
                error = f"HTTP {status}: {exc.message}"
                if status not in RETRY_STATUSES and status < 500:
                    return failed(request, self._scrub(error), attempt)
                if status == 429:
                    wait = retry_after_seconds(exc.response.headers)
            except openai.APITimeoutError:
                if time.monotonic() >= deadline:
                    error = f"ran past the deadline of {deadline - started:g} s"
                    if deadline < last:
                        error = f"ran past the call deadline of {self.call_deadline:g} s"
                else:
                    error = f"timed out after {self.timeout:g} s"
            except openai.APIConnectionError as exc:
                if self._stop.is_set():
                    error = "interrupted"
                    break
                error = f"connection error: {exc.__cause__ or exc}"
            except ValueError as exc:  # an undecodable or invalid body (JSON, pydantic)
                error = f"malformed answer: {type(exc).__name__}: {exc}"
            else:
                used = _usage(response)
                prompt, completion = prompt + used[0], completion + used[1]
                tally.add(prompt=used[0], completion=used[1])
                budget.spend(sum(used))
                text, error = _answer_text(response)
                if text is not None:
                    text = self._scrub(text)  # an endpoint may echo the key back
                    return ChatResult(request, text, None, False, attempt, prompt, completion, "ok")
            if attempt > self.max_retries:
                break
            delay = self._backoff(attempt) if wait is None else min(wait, MAX_RETRY_AFTER)
            if time.monotonic() + delay >= last:
                error += (
                    f"; not retried: waiting {delay:.1f} s would pass the deadline of "
                    f"{self.retry_deadline:g} s per request (IAD_LLM_RETRY_DEADLINE)"
                )
                break
            tally.add(retries=1)
            log.warning(
                "chat %s %s: %s; retry %d of %d in %.2f s",
                self.model,
                "/".join(request.key),
                self._scrub(error),
                attempt,
                self.max_retries,
                delay,
            )
            self._sleep(delay)
        error = self._scrub(f"{error} (gave up after {attempts} attempts)")
        return replace(
            failed(request, error, attempts),
            prompt_tokens=prompt,
            completion_tokens=completion,
        )

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in ``[0, min(BACKOFF_MAX, BACKOFF_BASE * 2**(attempt-1))]``."""
        return self._rng.uniform(0.0, min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1)))
