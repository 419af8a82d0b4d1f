"""An OpenAI-compatible server (GPT-4o, a vLLM or Ollama server) through the knowledge client.

Requests go through :class:`~iad_pipeline.knowledge.client.ChatClient`, so evaluation gets
its disk cache (a re-run asks nothing it asked before), bounded concurrency, retries with
backoff and ``Retry-After``, and secret scrubbing. One request per prompt.

What is sent (MMAD's order, ``gpt4v.py`` of jam-cc/MMAD ``bad03b4`` builds its payload the
same way): the prompt's text and images interleaved at its ``<image>`` markers (template
sentence, template image, query sentence, query image, question), the protocol's system
prompt first when it has one. ``iad prompt --model openai:NAME`` prints this content.

Differences from MMAD's GPT-4o script that remain (the rows it produced):

- **Wording**: the prompt is the protocol's (the Qwen script's for ``mmad``: instruction and
  "Answer ... directly! " in the user message); ``gpt4v.py`` sends the instruction as a
  system message, words the template sentence differently
  (:data:`~iad_pipeline.questions.prompts.MMAD_GPT4_TEMPLATE_INTRO`) and sends question ``i``
  together with questions 1..i.
- **Decoding**: the client sends neither ``max_tokens`` nor ``temperature``, so the server's
  defaults apply (MMAD's GPT-4o script leaves them at the defaults too).
- **Image size**: images are PNG, downscaled to ``max_side`` pixels on the long side (the
  client's default 512, unless given); ``gpt4v.py`` sends JPEG within 512 x 512 with
  ``detail: "low"``.

A request that fails after its retries gives ``None``: the runner stores nothing for it and
the next run asks it again (a cached answer costs nothing then).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.backends import BackendError
from eval.prompting import PromptSpec
from iad_pipeline.knowledge.client import IMAGE_MARKER, ChatClient, ChatConfigError, ChatRequest
from iad_pipeline.settings import ChatSettings

log = logging.getLogger(__name__)


def request_of(prompt: PromptSpec) -> ChatRequest:
    """The chat request of a prompt: its text with image markers, interleaved, its images.

    >>> from pathlib import Path
    >>> spec = PromptSpec("q1", "V/c/1.png", "Q?", "Anomaly Detection",
    ...     [{"type": "text", "text": "a "}, {"type": "image"}, {"type": "text", "text": "b"}],
    ...     [Path("/d/V/c/1.png")], {"A": "Yes"}, "A", "a <image>b")
    >>> request_of(spec)  # doctest: +NORMALIZE_WHITESPACE
    ChatRequest(key=('q1',), text='a <image>b', images=('/d/V/c/1.png',), masks=(),
                interleaved=True, system=None)
    """
    text = "".join(
        b.get("text", "") if b.get("type") == "text" else IMAGE_MARKER
        for b in prompt.content_blocks
    )
    return ChatRequest(
        key=(prompt.question_id or prompt.image,),
        text=text,
        images=tuple(str(p) for p in prompt.images),
        interleaved=True,
        system=prompt.system,
    )


def request_content(prompt: PromptSpec) -> list[dict[str, Any]]:
    """The messages' content as sent, images named by path (what ``iad prompt`` shows)."""
    request = request_of(prompt)
    messages: list[dict[str, Any]] = []
    if request.system is not None:
        messages.append({"role": "system", "content": request.system})
    urls = [f"<{p}>" for p in request.images]
    messages.append({"role": "user", "content": request.content(urls)})
    return messages


class OpenAIBackend:
    """Answer prompts with a model behind an OpenAI-compatible chat endpoint.

    Args:
        model: the model name the server serves.
        base_url: the server's ``/v1`` URL (``None``: ``OPENAI_BASE_URL``, else OpenAI).
        cache_dir: folder of the response cache.
        sleep: the client's sleep function (tests pass a fake clock's).
        settings: further :class:`~iad_pipeline.settings.ChatSettings` fields by name, each
            with its default there: ``concurrency`` (requests in flight), ``timeout``
            (seconds per attempt), ``max_retries``, ``max_side`` (longest image side sent),
            ``max_requests`` / ``max_tokens`` (the budget), prices and deadlines.

    ``max_new_tokens`` of :meth:`answer` is not sent (see the module docstring).
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        cache_dir: Path | str,
        sleep: Any = None,
        **settings: Any,
    ) -> None:
        try:
            chat = ChatSettings(base_url=base_url, model=model, **settings)
            self.client = ChatClient(chat, cache_dir, sleep=sleep)
        except (ChatConfigError, TypeError) as exc:
            msg = f"OpenAIBackend({model!r}): {exc}"
            raise BackendError(msg) from exc
        self.model = model
        self.last_report = None

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.model!r}, base_url={self.client.base_url!r})"

    def close(self) -> None:
        self.client.close()

    def answer(
        self, prompts: Sequence[PromptSpec], max_new_tokens: int | None = None
    ) -> list[str | None]:
        """One answer per prompt; ``None`` where the request failed or the budget ran out."""
        report = self.client.run([request_of(p) for p in prompts])
        self.last_report = report
        answers: list[str | None] = []
        for result in report.results:
            if result.status == "ok":
                answers.append(result.text)
            else:
                log.warning("%s %s: no answer (%s)", self.model, result.request.key, result.error)
                answers.append(None)
        return answers
