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
- **Settings**: one :class:`~iad_pipeline.settings.ChatSettings` object, passed
  whole (from the Dagster resource or the CLI through the provider factory).
- **Deadlines**: each attempt has a total deadline (``call_deadline``, however slowly the
  server trickles bytes), and each request with all its retries and backoff sleeps one more
  (``retry_deadline``; a ``Retry-After`` that would pass it ends the request as failed).
  Ctrl-C stops the run within about a second: backoff sleeps wait on an event, reads are
  sliced (:mod:`~iad_pipeline.knowledge.transport`), queued requests are cancelled.
- **Messages**: one user message (see :mod:`~iad_pipeline.knowledge.results`).
- **Concurrency**: a pool of ``concurrency`` threads, so never more requests in flight.
- **Retries**: the project's one policy (:class:`~iad_pipeline.retry.RetryPolicy`, on
  tenacity), the same as for downloads: on 429 (``Retry-After`` honoured, up to 300 s), 408,
  409, 5xx, timeouts and connection errors, and on an answer that is malformed (undecodable
  body, no choices, non-string content) or empty; exponential backoff with full jitter
  otherwise. After ``max_retries`` retries the request becomes a ``failed`` row whose error
  says what went wrong; other 4xx fail at once. A failed row never carries text. The openai
  client's own retries are off (``max_retries=0``) because they cannot do what this needs:
  they sleep with ``time.sleep`` in the worker thread (Ctrl-C would wait out a two-minute
  ``Retry-After``), ignore the per-request deadline, never retry a malformed or empty 200
  answer, and are not counted in the report.
- **Cache**: answers are cached on disk by provider, model, text and image bytes as sent
  (:mod:`~iad_pipeline.knowledge.cache`); a re-run with a warm cache makes no request and
  encodes no image (the digests of the bytes sent are remembered by file stamp). Failures
  are not cached.
- **Budget**: :mod:`~iad_pipeline.knowledge.budget`; cached answers are free.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import tenacity
from tqdm.auto import tqdm

from iad_pipeline import limits
from iad_pipeline.annotate.boxes import MaskError
from iad_pipeline.knowledge.budget import Budget, Tally
from iad_pipeline.knowledge.cache import (
    CachedAnswer,
    ResponseCache,
    cache_key,
    image_digest,
)
from iad_pipeline.knowledge.encoding import ImageEncoder
from iad_pipeline.knowledge.images import ImageEncodeError, to_data_url
from iad_pipeline.knowledge.results import (
    IMAGE_MARKER,
    ChatRequest,
    ChatResult,
    KnowledgeError,
    RunReport,
    answer_text,
    build_report,
    failed,
    usage,
)
from iad_pipeline.knowledge.secrets import Scrubber, scrub_logs, secret_values
from iad_pipeline.knowledge.transport import call_limits, deadline_http_client
from iad_pipeline.retry import RetriesExhausted, RetryPolicy, Transient, retry_after_seconds
from iad_pipeline.settings import ChatConfigError, ChatSettings

__all__ = [  # with the names other modules import from here
    "IMAGE_MARKER",
    "ChatClient",
    "ChatConfigError",
    "ChatRequest",
    "ChatSettings",
    "KnowledgeError",
    "RunReport",
]

log = logging.getLogger(__name__)

# Placeholder key for servers that need none (the openai client refuses to construct without).
NO_KEY = "not-needed"
RETRY_STATUSES = frozenset({408, 409, 429})
_WAKE = 0.2  # seconds between two checks for Ctrl-C while requests run


class ChatClient:
    """Send chat requests with a cache, bounded concurrency, retries and a budget.

    Args:
        settings: Server, model, concurrency, timeouts, retries, budget and prices
            (:class:`~iad_pipeline.settings.ChatSettings`; a
            :class:`~iad_pipeline.settings.KnowledgeSettings` is one).
        cache_dir: Folder of the response cache.
        sleep: Called with the backoff seconds (tests pass a recorder); ``None`` waits on
            the client's stop event, so Ctrl-C ends a backoff at once.

    Raises:
        IadError: ``IAD_LLM_CALL_DEADLINE`` or ``IAD_LLM_RETRY_DEADLINE`` is not positive.
    """

    def __init__(
        self,
        settings: ChatSettings,
        cache_dir: Path | str,
        *,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        call_deadline = settings.call_deadline or limits.llm_call_deadline()
        retry_deadline = settings.retry_deadline or limits.llm_retry_deadline()
        self.settings = settings
        self.base_url = settings.base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.model = settings.model
        self.cache = ResponseCache(cache_dir)
        self.call_deadline = float(call_deadline)
        self.retry = RetryPolicy(retries=settings.max_retries, deadline=float(retry_deadline))
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._images = ImageEncoder(self.cache, settings.max_side)
        # Read once, kept only inside the openai client and a scrubber; never an attribute
        # that a repr, a log or a pickle would show.
        secret = os.environ.get("OPENAI_API_KEY") or ""
        secrets = {*secret_values(), *([secret] if secret else [])}
        self._scrub = Scrubber(sorted(secrets, key=len, reverse=True))
        scrub_logs(secrets)
        timeout = float(settings.timeout)
        try:
            http_client = deadline_http_client(timeout)
        except RuntimeError as exc:  # an httpx this code does not know: per-read timeouts only
            log.warning("no total deadline per LLM call (%s)", exc)
            http_client = None
        self._client = openai.OpenAI(
            api_key=secret or NO_KEY,
            base_url=self.base_url,
            max_retries=0,  # retries are ours (see the module docstring)
            timeout=timeout,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return (
            f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, "
            f"concurrency={self.settings.concurrency}, cache_dir={str(self.cache.root)!r})"
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
        >>> c = ChatClient(ChatSettings(price_per_1k_input=0.01, price_per_1k_output=0.03),
        ...                tempfile.mkdtemp())
        >>> round(c.cost(2000, 1000), 6)
        0.05
        """
        s = self.settings
        if s.price_per_1k_input is None and s.price_per_1k_output is None:
            return None
        return prompt_tokens / 1000 * (s.price_per_1k_input or 0.0) + (
            completion_tokens / 1000 * (s.price_per_1k_output or 0.0)
        )

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
        budget = Budget(self.settings.max_requests, self.settings.max_tokens)
        if spent is not None:
            budget.started = spent.requests_made
            budget.tokens = spent.prompt_tokens + spent.completion_tokens
        tally = Tally()
        results: list[ChatResult | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc="chat", unit="req", disable=not progress)
        workers = max(1, min(self.settings.concurrency, len(requests)))
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
                self.settings.max_requests,
                self.settings.max_tokens,
                report.skipped,
            )
        return report

    def _one(self, request: ChatRequest, budget: Budget, tally: Tally) -> ChatResult:
        if request.interleaved and request.text.count(IMAGE_MARKER) != len(request.images):
            why = f"{request.text.count(IMAGE_MARKER)} {IMAGE_MARKER!r} markers"
            return failed(request, f"{why} for {len(request.images)} images; expected one each")
        images = self._images.images(request)
        try:
            digests = [self._images.digest(*image) for image in images]
        except (ImageEncodeError, MaskError) as exc:
            return failed(request, f"image not sent: {exc}")
        key = cache_key(self.settings.provider_name, self.model, request.cache_text(), digests)
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
            pngs = [self._images.encode(*image) for image in images]
        except (ImageEncodeError, MaskError) as exc:  # the file changed since its digest
            budget.release()
            return failed(request, f"image not sent: {exc}")
        sent = [image_digest(png) for png in pngs]
        if sent != digests:  # the file changed under us: key the answer by what was sent
            key = cache_key(self.settings.provider_name, self.model, request.cache_text(), sent)
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
        self, request: ChatRequest, messages: list[dict], budget: Budget, tally: Tally
    ) -> ChatResult:
        """One request with retries; never raises for what the server or network does."""
        spent = [0, 0]  # prompt and completion tokens of every attempt
        last = time.monotonic() + self.retry.deadline  # the whole request, retries included

        def attempt(number: int) -> ChatResult:
            deadline = min(time.monotonic() + self.call_deadline, last)
            response = self._attempt(request, messages, number, deadline, last)
            if isinstance(response, ChatResult):
                return response
            used = usage(response)
            spent[0], spent[1] = spent[0] + used[0], spent[1] + used[1]
            tally.add(prompt=used[0], completion=used[1])
            budget.spend(sum(used))
            text, error = answer_text(response)
            if text is None:
                raise Transient(error)
            text = self._scrub(text)  # an endpoint may echo the key back
            return ChatResult(request, text, None, False, number, *spent, "ok")

        def before_sleep(state: tenacity.RetryCallState) -> None:
            tally.add(retries=1)
            log.warning(
                "chat %s %s: %s; retry %d of %d in %.2f s",
                self.model,
                "/".join(request.key),
                self._scrub(str(state.outcome.exception() if state.outcome else "")),
                state.attempt_number,
                self.retry.retries,
                state.upcoming_sleep,
            )

        try:
            return self.retry.call(
                attempt, sleep=self._sleep, stop=self._stop, before_sleep=before_sleep
            )
        except RetriesExhausted as exc:
            error = "interrupted" if exc.stopped else str(exc.last)
            if exc.refused_wait is not None:
                error += (
                    f"; not retried: waiting {exc.refused_wait:.1f} s would pass the deadline "
                    f"of {self.retry.deadline:g} s per request (IAD_LLM_RETRY_DEADLINE)"
                )
            error = self._scrub(f"{error} (gave up after {exc.attempts} attempts)")
            return ChatResult(request, None, error, False, exc.attempts, *spent, "failed")

    def _attempt(
        self, request: ChatRequest, messages: list[dict], number: int, deadline: float, last: float
    ) -> Any:
        """The completion of one attempt, a failed result (not retried), or :class:`Transient`."""
        try:
            with call_limits(deadline, self._stop):
                return self._client.chat.completions.create(model=self.model, messages=messages)
        except openai.APIStatusError as exc:
            status = exc.status_code
            error = f"HTTP {status}: {exc.message}"
            if status not in RETRY_STATUSES and status < 500:
                return failed(request, self._scrub(error), number)
            wait = retry_after_seconds(exc.response.headers) if status == 429 else None
            raise Transient(error, wait) from exc
        except openai.APITimeoutError as exc:
            if time.monotonic() < deadline:
                error = f"timed out after {self.settings.timeout:g} s"
            elif deadline < last:
                error = f"ran past the call deadline of {self.call_deadline:g} s"
            else:  # cut by the deadline of the whole request
                error = f"ran past the deadline of {self.retry.deadline:g} s per request"
            raise Transient(error) from exc
        except openai.APIConnectionError as exc:
            error = (
                "interrupted"
                if self._stop.is_set()
                else f"connection error: {exc.__cause__ or exc}"
            )
            raise Transient(error) from exc
        except ValueError as exc:  # an undecodable or invalid body (JSON, pydantic)
            raise Transient(f"malformed answer: {type(exc).__name__}: {exc}") from exc
