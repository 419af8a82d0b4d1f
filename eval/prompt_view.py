"""``iad prompt``: exactly what a model receives for one MMAD question, as JSON.

The prompt is built by the evaluation's own code: :func:`~eval.prompting.build_prompt` on the
row :func:`~iad_pipeline.questions.mmad_json.read_mmad_json` reads, rendered by
:func:`~eval.prompting.chat_text` (the transformers and vLLM backends' renderer) or
:func:`~eval.backends.openai_backend.request_content` (the OpenAI-compatible backend's
request). Nothing here formats a prompt itself.

- ``mmad``: the chat text of the model's chat template as MMAD renders it (vision ids, the
  default system prompt of Qwen2.5-VL's template); without a model, the offline tiny
  Qwen2.5-VL's processor renders it (:func:`iad_pipeline.models.qwen_tokenizer.tiny_processor`,
  built in memory), whose template is Qwen2.5-VL's.
- ``emit_think`` / ``emit_direct``: EMIT's prompt string with its ``<image>`` placeholders, as
  EMIT's InternVL evaluation hands it to ``batch_chat``, and EMIT's system prompt.
- ``--model openai:NAME``: the messages of the request the OpenAI-compatible backend sends
  (images named by path where the data URLs go); ``text`` is the user text with ``<image>``
  where each image goes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from eval.mmad_files import image_key, mmad_knowledge, mmad_templates
from eval.prompting import build_prompt, chat_text
from eval.protocols import ProtocolError, protocol_named
from iad_pipeline.questions.mmad_json import NUMBER_TAG, read_mmad_json

OPENAI_PREFIX = "openai:"


def _processor(model: Path | None) -> Any:
    from iad_pipeline.models.processors import load_processor
    from iad_pipeline.models.qwen_tokenizer import tiny_processor

    if model is None:
        return tiny_processor()
    if not (Path(model) / "config.json").is_file():
        msg = f"{model}: no config.json; expected a transformers model folder (or openai:NAME)"
        raise ProtocolError(msg)
    return load_processor(model)


def _with_emit_hints(spec: Any, model: Path | None) -> Any:
    """The prompt as the backend sends it to a checkpoint with EMIT's comparison module: the
    placeholder its hints replace appended where they go (the transformers backend's rule)."""
    from dataclasses import replace

    from iad_pipeline.models.emit import EMIT_WEIGHTS_NAME, add_hint_placeholder
    from iad_pipeline.models.emit.checkpoint import read_emit_file

    if model is None or not (model / EMIT_WEIGHTS_NAME).is_file():
        return spec
    settings, _ = read_emit_file(model / EMIT_WEIGHTS_NAME)
    hint = {"task": spec.question_type, "n_images": len(spec.images), "settings": settings}
    blocks = add_hint_placeholder(spec.content_blocks, **hint)
    text = add_hint_placeholder(spec.text, **hint)
    if blocks is spec.content_blocks:
        return spec
    return replace(spec, content_blocks=blocks, text=text)


def question_row(mmad_json: Path, key: str, number: int) -> dict[str, Any]:
    """The question table row of question ``number`` (1-based, MMAD's) of image ``key``."""
    table = read_mmad_json(mmad_json, mmad_json.parent)
    rows = table.filter(
        pl.col("image_path") == str(mmad_json.parent / key),
        pl.col("recipe_tags").list.contains(f"{NUMBER_TAG}{number}"),
    )
    if rows.height == 0:
        count = table.filter(pl.col("image_path") == str(mmad_json.parent / key)).height
        if count == 0:
            msg = f"{mmad_json}: no image {key!r}; expected a key of the file"
        else:
            msg = f"{mmad_json}: image {key!r} has questions 1-{count}, not {number}"
        raise ProtocolError(msg)
    return rows.row(0, named=True)


def show_prompt(
    mmad_json: Path | str,
    key: str,
    number: int,
    *,
    protocol: str = "mmad",
    shots: int | None = None,
    template: str | None = None,
    knowledge: Path | str | None = None,
    model: str | Path | None = None,
) -> dict[str, Any]:
    """``{"images": [...], "text": "..."}`` of one question as the evaluation sends it.

    Args:
        mmad_json: MMAD's ``mmad.json``; image paths are resolved against its folder and
            printed relative to it.
        key: the query image's key in the file.
        number: the question's number in its image's conversation (1-based, MMAD's).
        protocol: ``mmad``, ``emit_think`` or ``emit_direct``.
        shots, template: override the protocol's template count and list.
        knowledge: ``domain_knowledge.json``; MMAD's ``--domain_knowledge``, needed by EMIT's.
        model: a model folder (its processor's chat template), ``openai:NAME``, or ``None``
            for the offline tiny Qwen2.5-VL.

    Returns:
        ``images`` in the order the model receives them, ``text`` as described in the module
        docstring, ``system`` when the protocol sets one, ``messages`` for ``openai:``.
    """
    mmad_json = Path(mmad_json).absolute()  # keys are relative to its folder, from anywhere
    root = mmad_json.parent
    changes: dict[str, Any] = {"knowledge": knowledge is not None}
    if shots is not None:
        changes["shots"] = shots
    if template is not None:
        changes["template"] = template
    chosen = protocol_named(protocol, **changes)
    if chosen.style == "emit" and knowledge is None:
        msg = (
            f"protocol {protocol!r}: EMIT's evaluation always adds the domain knowledge; pass "
            "--knowledge domain_knowledge.json"
        )
        raise ProtocolError(msg)
    dk = mmad_knowledge(knowledge) if knowledge is not None else None
    spec = build_prompt(
        question_row(mmad_json, key, number), chosen, mmad_templates(mmad_json), dk, root
    )
    out: dict[str, Any] = {"images": [image_key(p, root) for p in spec.images]}
    if isinstance(model, str) and model.startswith(OPENAI_PREFIX):
        from eval.backends.openai_backend import request_content, request_of

        out["text"] = request_of(spec).text
        out["messages"] = request_content(spec)
        for message in out["messages"]:
            if isinstance(message["content"], list):
                for part in message["content"]:
                    if part["type"] == "image_url":
                        url = part["image_url"]["url"]
                        part["image_url"]["url"] = image_key(url.strip("<>"), root)
        return out
    spec = _with_emit_hints(spec, None if model is None else Path(model))
    if chosen.style == "emit":
        out["text"] = spec.text
    else:
        out["text"] = chat_text(_processor(None if model is None else Path(model)), spec)
    if spec.system is not None:
        out["system"] = spec.system
    return out
