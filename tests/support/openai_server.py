"""A loopback OpenAI-compatible chat server with request checks and fault injection.

A real :class:`http.server.ThreadingHTTPServer` on ``127.0.0.1`` (port chosen by the OS)
serves ``POST /v1/chat/completions`` in a daemon thread and answers OpenAI-shaped JSON
(``id``, ``object``, ``created``, ``model``, ``choices[0].message.content``, ``usage``). Every
request is checked the way a strict server would, and a broken one is answered 400 with the
reason (the reason is also recorded, so a test can assert none happened; the checks are
:mod:`tests.support.openai_checks`):

- the model is the expected one;
- ``messages`` is a list holding one ``user`` message, after an optional ``system`` message
  with string content; the user content is a list of ``text`` and ``image_url`` parts in
  any order, at least one of them text (``Seen.layout`` records the order, ``Seen.prompt``
  the text parts joined, ``Seen.system`` the system prompt);
- every image is a ``data:image/png;base64,...`` URL that decodes to an image whose long
  side is at most ``max_side`` (512, EMIT's limit);
- the ``Authorization`` header equals ``Bearer <api_key>`` when the server has a key.

>>> with OpenAIServer(model="m") as server:
...     server.base_url.startswith("http://127.0.0.1:"), server.requests_seen
(True, 0)

The answer comes from ``answer(prompt_text, n_images)`` (default :func:`echo_answer`, a
deterministic text derived from the prompt); ``latency`` seconds are slept before each answer.
Faults (:meth:`OpenAIServer.add_fault`) apply to the requests numbered in ``nth`` (1-based,
over every request the server saw) or to every request whose parsed body satisfies ``when``:

* ``"429"``: rate limited, with ``Retry-After: <retry_after>`` when given;
* ``"500"``: an internal server error;
* ``"slow"``: the answer comes after ``delay`` seconds (longer than the client's timeout);
* ``"malformed"``: status 200, ``Content-Type: application/json``, a truncated JSON body;
* ``"empty"``: a well-formed completion whose message content is ``""``;
* ``"no_choices"``: a well-formed completion with ``choices: []``;
* ``"trickle"``: a well-formed completion whose body is sent one byte every ``delay``
  seconds (no single read waits long, the whole answer takes for ever).

``echo_authorization=True`` appends the request's ``Authorization`` header to every answer
text, as a debugging proxy or a model asked to repeat its input would.

Counters (read them, do not write): :attr:`OpenAIServer.seen` (one :class:`Seen` per request:
the parsed body, the headers, the prompt text, image sizes and the status answered),
``max_in_flight`` (the most requests handled at the same time).
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.background import BackgroundServer, QuietServer
from tests.support.openai_checks import CheckFailed, Expected, Seen, check_request

logger = logging.getLogger(__name__)

FAULTS = ("429", "500", "slow", "malformed", "empty", "no_choices", "trickle")


def echo_answer(prompt: str, n_images: int) -> str:
    """A deterministic answer: a digest of the prompt, the image count and its first words.

    >>> echo_answer("Describe the bottle.", 1)
    'Answer cfbac1e3 (1 images): Describe the bottle.'
    """
    digest = hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:8]
    return f"Answer {digest} ({n_images} images): {' '.join(prompt.split()[:12])}"


@dataclass
class Fault:
    """One injected fault; see the module docstring for the kinds."""

    kind: str
    nth: frozenset[int] = frozenset()
    when: Callable[[dict], bool] | None = None
    retry_after: float | None = None
    delay: float = 5.0

    def applies(self, n: int, body: dict) -> bool:
        return n in self.nth or (self.when is not None and bool(self.when(body)))


class _App:
    def __init__(self, model: str, api_key: str | None, max_side: int) -> None:
        self.lock = threading.Lock()
        self.model = model
        self.api_key = api_key
        self.max_side = max_side
        self.answer: Callable[[str, int], str] = echo_answer
        self.latency = 0.0
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.leaky_errors = False
        self.echo_authorization = False

    def check(self, seen: Seen) -> None:
        """Raise :class:`CheckFailed` unless the request is one a strict server accepts."""
        check_request(seen, Expected(self.model, self.api_key, self.max_side))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: QuietServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm holds
        # the body until the client's delayed ACK (40 ms on Linux) and every answer is slow.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_POST(self) -> None:
        app = self.server.app
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with app.lock:
            seen = Seen(len(app.seen) + 1, {k.lower(): v for k, v in self.headers.items()}, body)
            app.seen.append(seen)
            app.in_flight += 1
            app.max_in_flight = max(app.max_in_flight, app.in_flight)
            faults = list(app.faults)
        try:
            self._answer(app, seen, faults)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with app.lock:
                app.in_flight -= 1

    def _answer(self, app: _App, seen: Seen, faults: list[Fault]) -> None:
        if urlsplit(self.path).path != "/v1/chat/completions":
            self._json(seen, 404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            app.check(seen)
        except CheckFailed as exc:
            seen.reason = str(exc)
            message = seen.reason
            if app.leaky_errors:
                message += f" (got Authorization: {seen.headers.get('authorization')})"
            self._json(seen, 400, {"error": {"message": message, "type": "invalid_request"}})
            return
        if app.latency:
            time.sleep(app.latency)
        fault = next((f for f in faults if f.applies(seen.n, seen.body or {})), None)
        seen.fault = fault.kind if fault else None
        if fault is not None and fault.kind == "429":
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            self._json(seen, 429, {"error": {"message": "rate limited"}}, headers)
            return
        if fault is not None and fault.kind == "500":
            self._json(seen, 500, {"error": {"message": "internal error"}})
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.kind == "malformed":
            self._send(seen, 200, b'{"id": "chatcmpl-x", "choices": [{"message": {"cont')
            return
        text = app.answer(seen.prompt, len(seen.image_sizes))
        if app.echo_authorization:
            text += f" (you sent Authorization: {seen.headers.get('authorization')})"
        if fault is not None and fault.kind == "empty":
            text = ""
        choices = [{"index": 0, "message": {"role": "assistant", "content": text}}]
        choices[0]["finish_reason"] = "stop"
        prompt_tokens = len(seen.prompt.split()) + 85 * len(seen.image_sizes)
        completion_tokens = len(text.split())
        completion = {
            "id": f"chatcmpl-{seen.n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": app.model,
            "choices": [] if fault is not None and fault.kind == "no_choices" else choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if fault is not None and fault.kind == "trickle":
            self._send(seen, 200, json.dumps(completion).encode(), trickle=fault.delay)
            return
        self._json(seen, 200, completion)

    def _json(
        self, seen: Seen, status: int, obj: dict, headers: dict[str, str] | None = None
    ) -> None:
        self._send(seen, status, json.dumps(obj).encode(), headers)

    def _send(
        self,
        seen: Seen,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        trickle: float = 0.0,
    ) -> None:
        seen.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not trickle:
            self.wfile.write(body)
            self.wfile.flush()
            return
        self.wfile.flush()
        for i in range(len(body)):
            time.sleep(trickle)
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()


class OpenAIServer(BackgroundServer):
    """An OpenAI-compatible chat server on ``http://127.0.0.1:<port>/v1``; a context manager.

    Args:
        model: The model every request must name.
        api_key: The key every request must carry as ``Bearer``; ``None`` accepts any.
        answer: ``answer(prompt_text, n_images) -> str``; default :func:`echo_answer`.
        latency: Seconds slept before each answer.
        max_side: The longest image side accepted.
        leaky_errors: Quote the request's Authorization header in 400 answers, as some
            misconfigured proxies do (to test that clients scrub error texts).
        echo_authorization: Quote it in every answer text too (to test that clients scrub
            what they store, not only errors).
    """

    def __init__(
        self,
        model: str = "test-model",
        *,
        api_key: str | None = None,
        answer: Callable[[str, int], str] | None = None,
        latency: float = 0.0,
        max_side: int = 512,
        leaky_errors: bool = False,
        echo_authorization: bool = False,
    ) -> None:
        super().__init__(_App(model, api_key, max_side), _Handler)
        self._app.leaky_errors = leaky_errors
        self._app.echo_authorization = echo_authorization
        self._app.answer = answer or echo_answer
        self._app.latency = latency

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, the ``base_url`` of an OpenAI client."""
        return f"http://127.0.0.1:{self.port}/v1"

    def add_fault(
        self,
        kind: str,
        *,
        nth: Collection[int] = (),
        when: Callable[[dict], bool] | None = None,
        retry_after: float | None = None,
        delay: float = 5.0,
    ) -> Fault:
        """Inject ``kind`` into requests numbered ``nth`` (1-based) or matching ``when``."""
        if kind not in FAULTS:
            msg = f"unknown fault {kind!r}; valid: {', '.join(FAULTS)}"
            raise ValueError(msg)
        fault = Fault(kind, frozenset(nth), when, retry_after, delay)
        with self._app.lock:
            self._app.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._app.lock:
            self._app.faults.clear()

    @property
    def latency(self) -> float:
        return self._app.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._app.latency = seconds

    @property
    def seen(self) -> list[Seen]:
        with self._app.lock:
            return list(self._app.seen)

    @property
    def requests_seen(self) -> int:
        with self._app.lock:
            return len(self._app.seen)

    @property
    def max_in_flight(self) -> int:
        with self._app.lock:
            return self._app.max_in_flight

    def rejected(self) -> list[Seen]:
        """Requests answered 400 by the checks (a correct client makes none)."""
        return [s for s in self.seen if s.status == 400]


def prompt_of(body: dict) -> str:
    """The text part of a chat body's only message (for ``when`` predicates).

    >>> prompt_of({"messages": [{"content": [{"type": "text", "text": "hi"}]}]})
    'hi'
    """
    try:
        parts = body["messages"][-1]["content"]
        return "".join(p["text"] for p in parts if p.get("type") == "text")
    except (KeyError, IndexError, TypeError, StopIteration):
        return ""
