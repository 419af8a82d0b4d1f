"""Where the hints go in a prompt: the placeholder token, repeated, at the end of the user turn.

EMIT inserts its soft prompt and contrastive embeddings right before the end of the user's
message, for anomaly discrimination and defect localization questions only, and only when
the prompt shows a reference and a query image (text-only samples and prompts without a
reference get none). :func:`add_hint_placeholder` writes ``settings.num_tokens`` copies of
the placeholder there, so the tokenized length is known before tokenization and the model's
``forward`` (:mod:`iad_pipeline.models.emit.model`) swaps their embeddings; every other prompt is
returned as it was, the same object.
"""

from __future__ import annotations

from typing import Any

from iad_pipeline.models.emit.settings import EMIT_HINT_TASKS, EmitModuleSettings


def hint_task(task: str | None) -> bool:
    """Whether a question of ``task`` (our name or MMAD's question type) gets hints.

    >>> [hint_task(t) for t in ("anomaly_detection", "Defect Localization", "Object Analysis")]
    [True, True, False]
    """
    return bool(task) and task.strip().lower().replace(" ", "_") in EMIT_HINT_TASKS


def add_hint_placeholder(
    content: str | list[dict[str, Any]],
    *,
    task: str | None,
    n_images: int,
    settings: EmitModuleSettings,
    text_query: bool = False,
) -> str | list[dict[str, Any]]:
    """The user message ``content`` with the hint placeholder appended, where EMIT puts hints.

    ``content`` is a rendered prompt string or a list of chat content blocks; ``n_images`` is
    how many images the prompt shows (a reference and a query are needed); ``text_query``
    marks EMIT's text samples, whose query is an object description (rendered or not), never
    hinted. A prompt that gets no hints comes back unchanged (the same object).

    >>> s = EmitModuleSettings(soft_prompt_tokens=2, heatmap_grid=2, placeholder="<p>")
    >>> add_hint_placeholder("Q?", task="anomaly_detection", n_images=2, settings=s)
    'Q?<p><p><p>'
    >>> add_hint_placeholder("Q?", task="anomaly_detection", n_images=1, settings=s)
    'Q?'
    """
    if not settings.active or text_query or n_images < 2 or not hint_task(task):
        return content
    marks = settings.placeholder * settings.num_tokens
    if isinstance(content, str):
        return content + marks
    return [*content, {"type": "text", "text": marks}]
