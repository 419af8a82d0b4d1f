"""One question row as a backend receives it: :func:`build_prompt` and :class:`PromptSpec`.

:func:`build_prompt` turns a question row into the :class:`PromptSpec` a backend answers
under a :class:`~eval.protocols.Protocol` (the protocols and their sources are described
there); :func:`chat_text` renders it for a local model (the transformers and vLLM backends
and ``iad prompt`` all go through it). :class:`PromptSources` holds what prompts are built
from besides the row: the template lists, the domain knowledge and the image root.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.mmad_files import image_key, question_type, resolve
from eval.protocols import Protocol, ProtocolError
from iad_pipeline.questions import prompts as P
from iad_pipeline.questions.prompts import (
    IMAGE_PLACEHOLDER,
    LETTERS,
    MMAD_TEMPLATE_INTRO,
    bare_question,
    format_question,
    question_only,
    render_prompt,
    to_content,
)


@dataclass(frozen=True)
class PromptSpec:
    """One question as a backend receives it.

    ``content_blocks`` are chat content parts in MMAD's order (``{"type": "text", "text"}``
    and ``{"type": "image"}``, one per entry of ``images``, in the same order); ``text`` is
    the rendered prompt with ``<image>`` markers. ``options`` maps letters to texts in the
    order asked, ``answer`` is the correct letter in that order, ``question`` the bare
    question. ``image`` is MMAD's key of the query image (relative to the image root).
    """

    question_id: str
    image: str
    question: str
    question_type: str
    content_blocks: list[dict[str, str]]
    images: list[Path]
    options: dict[str, str]
    answer: str
    text: str
    shots: int = 0
    system: str | None = None
    add_vision_id: bool = False
    min_pixels: int | None = None
    max_pixels: int | None = None


@dataclass(frozen=True)
class PromptSources:
    """What prompts are built from besides the question row (see :func:`build_prompt`).

    ``templates``: ``mmad_templates(mmad.json)`` (``None``: the row's ``reference_image``
    for a 1-shot protocol); ``knowledge``: ``{knowledge_key: text}`` for protocols with
    knowledge; ``image_root``: the data root of the image and template paths.
    """

    templates: Mapping[str, Mapping[str, Sequence[str]]] | None = None
    knowledge: Mapping[str, str] | None = None
    image_root: Path | str | None = None

    def prompt(self, question_row: Mapping[str, Any], protocol: Protocol) -> PromptSpec:
        """The prompt of ``question_row`` under ``protocol`` built from these sources."""
        return build_prompt(question_row, protocol, self.templates, self.knowledge, self.image_root)


def chat_messages(spec: PromptSpec) -> list[dict[str, Any]]:
    """The chat messages of a prompt: the system prompt if any, then the user's content.

    >>> spec = build_prompt({"question_id": "q", "image_path": "V/c/1.png", "question": "Q?",
    ...     "options": ["Yes", "No"], "answer": "A"}, Protocol(shots=0))
    >>> [m["role"] for m in chat_messages(spec)], chat_messages(spec)[0]["content"][1]
    (['user'], {'type': 'image'})
    """
    messages: list[dict[str, Any]] = []
    if spec.system is not None:
        messages.append({"role": "system", "content": spec.system})
    messages.append({"role": "user", "content": spec.content_blocks})
    return messages


def chat_text(processor: Any, spec: PromptSpec) -> str:
    """The text a local model receives: the processor's chat template over the messages.

    MMAD's script renders with ``add_vision_id=True`` ("Picture 1: " before each image); the
    prompt says whether to (:attr:`Protocol.add_vision_id`). The transformers and vLLM
    backends and ``iad prompt`` all render through here.
    """
    return processor.apply_chat_template(
        chat_messages(spec),
        tokenize=False,
        add_generation_prompt=True,
        add_vision_id=spec.add_vision_id,
    )


def image_size_kwargs(processor_images: Any, specs: Sequence[PromptSpec]) -> dict[str, Any]:
    """The image processor's ``size`` for a batch: the prompts' min and max pixels.

    Qwen2-VL's image processor reads ``size={"shortest_edge": min_pixels, "longest_edge":
    max_pixels}``; MMAD passes them to ``AutoProcessor.from_pretrained``. A batch holds
    prompts of one protocol; prompts with other bounds are an error. An image processor that
    cuts images into tiles of a fixed ``{"height", "width"}`` (InternVL's) has no pixel budget:
    the bounds do not apply and nothing is passed.
    """
    bounds = {(s.min_pixels, s.max_pixels) for s in specs}
    if len(bounds) > 1:
        msg = f"one batch holds prompts with different pixel bounds {sorted(bounds, key=str)}"
        raise ProtocolError(msg)
    if not bounds:
        return {}
    low, high = bounds.pop()
    if low is None and high is None:
        return {}
    size = dict(getattr(processor_images, "size", None) or {})
    if {"height", "width"} <= size.keys():  # fixed tiles (InternVL): no pixel budget
        return {}
    if low is not None:
        size["shortest_edge"] = low
    if high is not None:
        size["longest_edge"] = high
    return {"size": size}


def shuffled_options(
    options: Sequence[str], answer: str, seed: int, question_id: str
) -> tuple[list[str], str]:
    """Options in a random order seeded by ``seed`` and the question id, and the new answer.

    >>> opts, answer = shuffled_options(["Yes", "No", "Maybe"], "B", 0, "q1")
    >>> sorted(opts) == sorted(["Yes", "No", "Maybe"]), opts[LETTERS.index(answer)]
    (True, 'No')
    >>> shuffled_options(["Yes", "No", "Maybe"], "B", 0, "q1") == (opts, answer)
    True
    """
    if answer not in LETTERS[: len(options)]:
        msg = (
            f"question {question_id}: answer {answer!r} is not the letter of one of its "
            f"{len(options)} options; fix the question table"
        )
        raise ProtocolError(msg)
    # A string seed is hashed with SHA-512 by random.Random: stable across runs and machines.
    order = list(range(len(options)))
    random.Random(f"{seed}|{question_id}").shuffle(order)
    new_answer = LETTERS[order.index(LETTERS.index(answer))]
    return [options[i] for i in order], new_answer


def _templates_of(
    row: Mapping[str, Any],
    key: str,
    protocol: Protocol,
    templates: Mapping[str, Mapping[str, Sequence[str]]] | None,
) -> list[str]:
    if protocol.shots == 0:
        return []
    if templates is None:
        if protocol.shots == 1 and row.get("reference_image"):
            return [str(row["reference_image"])]
        msg = (
            f"question {row.get('question_id')}: {protocol.name} needs {protocol.shots} "
            "template(s) but no templates were given and the row has no reference image; pass "
            "templates=mmad_templates(mmad_json)"
        )
        raise ProtocolError(msg)
    entry = templates.get(key)
    if entry is None:
        msg = (
            f"image {key!r}: no templates for it; expected a key of the templates mapping "
            "(MMAD keys, relative to image_root); pass the mmad.json the questions came from"
        )
        raise ProtocolError(msg)
    found = list(entry.get(protocol.template) or [])
    # MMAD slices templates[:k]: an image with fewer templates is asked with those it has
    # (none: as a 0-shot question); EMIT indexes similar_templates[0], which must exist.
    fewer_ok = protocol.style == "mmad" and protocol.template_shortfall == "fewer"
    if len(found) < protocol.shots and not fewer_ok:
        msg = (
            f"image {key!r}: {len(found)} {protocol.template} templates, {protocol.name} needs "
            f"{protocol.shots}; use fewer shots or another template list"
        )
        raise ProtocolError(msg)
    return found[: protocol.shots]


def _knowledge_of(
    row: Mapping[str, Any], qtype: str, protocol: Protocol, knowledge: Mapping[str, str] | None
) -> str | None:
    if not protocol.knowledge:
        return None
    if qtype in protocol.knowledge_skip_types or row.get("mmad_type") in (
        protocol.knowledge_skip_types
    ):
        return None
    key = row.get("knowledge_key")
    text = None if knowledge is None else knowledge.get(key)
    if not text:
        msg = (
            f"question {row.get('question_id')}: {protocol.name} needs domain knowledge for "
            f"{key!r}, found none; pass knowledge=mmad_knowledge(domain_knowledge.json) "
            "holding that key"
        )
        raise ProtocolError(msg)
    if IMAGE_PLACEHOLDER in text:
        msg = f"knowledge {key!r} contains {IMAGE_PLACEHOLDER!r}, the image marker; remove it"
        raise ProtocolError(msg)
    return text


def build_prompt(
    question_row: Mapping[str, Any],
    protocol: Protocol,
    templates: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    knowledge: Mapping[str, str] | None = None,
    image_root: Path | str | None = None,
) -> PromptSpec:
    """The prompt of one question row under ``protocol``.

    Args:
        question_row: a row of the question table (a choice style: mmad, emit, anomalyr1).
        protocol: the protocol.
        templates: ``mmad_templates(mmad.json)``; ``None`` uses the row's
            ``reference_image`` for a 1-shot protocol.
        knowledge: ``{knowledge_key: text}`` (:func:`~eval.mmad_files.mmad_knowledge`), needed with
            ``protocol.knowledge``.
        image_root: the data root; relative image and template paths are resolved against
            it and the query's MMAD key is its path relative to it.

    Raises:
        ProtocolError: missing templates or knowledge, or an answer that is no option letter.

    Example:
        >>> row = {"question_id": "q", "style": "mmad", "image_path": "VisA/c/test/bad/1.png",
        ...        "question": "Is there any defect? \\nA. Yes\\nB. No\\n",
        ...        "options": ["Yes", "No"], "answer": "A", "mmad_type": "Anomaly Detection"}
        >>> spec = build_prompt(row, Protocol(shots=0))
        >>> [b["type"] for b in spec.content_blocks], spec.options, spec.question
        (['text', 'image', 'text'], {'A': 'Yes', 'B': 'No'}, 'Is there any defect?')
    """
    qid = str(question_row.get("question_id") or "")
    key = image_key(question_row["image_path"], image_root)
    qtype = question_type(question_row)
    options = [str(o) for o in question_row["options"]]
    answer = str(question_row["answer"])
    question = str(question_row["question"])
    bare = bare_question(question, options)
    if protocol.shuffle_options:
        options, answer = shuffled_options(options, answer, protocol.seed, qid)
        question = format_question(bare, options)
    if protocol.form == "question":
        refs = _question_only_refs(question_row, protocol, templates, key, qtype)
        text = question_only(format_question(bare, options), len(refs) + 1)
    elif protocol.style == "emit":
        text, refs = _emit_text(
            question_row, protocol, templates, knowledge, key, qtype, format_question(bare, options)
        )
    else:
        refs = _templates_of(question_row, key, protocol, templates)
        text = render_prompt(
            {**question_row, "question": question, "reference_image": refs[0] if refs else None},
            knowledge=_knowledge_of(question_row, qtype, protocol, knowledge),
            style="mmad",
        )
        if len(refs) > 1:
            one = MMAD_TEMPLATE_INTRO.format(k=1) + IMAGE_PLACEHOLDER
            text = text.replace(
                one, MMAD_TEMPLATE_INTRO.format(k=len(refs)) + IMAGE_PLACEHOLDER * len(refs), 1
            )
    images = [resolve(p, image_root) for p in [*refs, question_row["image_path"]]]
    blocks = to_content(text)
    if sum(b["type"] == "image" for b in blocks) != len(images):
        msg = (
            f"question {qid}: its text holds {text.count(IMAGE_PLACEHOLDER)} {IMAGE_PLACEHOLDER!r} "
            f"markers for {len(images)} images; remove the marker from the question or options"
        )
        raise ProtocolError(msg)
    return PromptSpec(
        question_id=qid,
        image=key,
        question=bare,
        question_type=qtype,
        content_blocks=blocks,
        images=images,
        options={LETTERS[i]: o for i, o in enumerate(options)},
        answer=answer,
        text=text,
        shots=len(refs),
        system=protocol.system_prompt,
        add_vision_id=protocol.add_vision_id,
        min_pixels=protocol.min_pixels,
        max_pixels=protocol.max_pixels,
    )


def _emit_compares(qtype: str) -> bool:
    """EMIT's test for a question asked beside its template (``"Defect" in type``, and
    Anomaly Detection)."""
    return "Defect" in qtype or qtype == "Anomaly Detection"


def _question_only_refs(
    row: Mapping[str, Any],
    protocol: Protocol,
    templates: Mapping[str, Mapping[str, Sequence[str]]] | None,
    key: str,
    qtype: str,
) -> list[str]:
    """The templates a ``form="question"`` prompt shows before the query: the style's own
    (EMIT: one for Anomaly Detection and Defect questions, none for Object ones)."""
    if protocol.style == "emit" and not _emit_compares(qtype):
        return []
    return _templates_of(row, key, protocol, templates)


def _emit_text(
    row: Mapping[str, Any],
    protocol: Protocol,
    templates: Mapping[str, Mapping[str, Sequence[str]]] | None,
    knowledge: Mapping[str, str] | None,
    key: str,
    qtype: str,
    question: str,
) -> tuple[str, list[str]]:
    """EMIT's MMAD evaluation prompt text and its template images
    (``evaluate_batch_mmad_choice.py``, EMIT ``01dc319``).

    Anomaly Detection and Defect questions (EMIT's test: ``"Defect" in type``) get the
    two-image prompt with the template and the knowledge; the others the query alone and no
    knowledge. The text keeps EMIT's ``<image>`` markers (InternVL expands them); for a chat
    template they become image parts, so ``Image-1: `` labels the template.
    """
    compares = _emit_compares(qtype)
    refs = _templates_of(row, key, protocol, templates) if compares else []
    text_k = _knowledge_of(row, qtype, protocol, knowledge) if compares else None
    rag = P.EMIT_EVAL_KNOWLEDGE + text_k if text_k else ""
    instruct = P.EMIT_EVAL_THINK if protocol.think else P.EMIT_EVAL_DIRECT
    template = P.EMIT_EVAL_TWO_IMAGE if refs else P.EMIT_EVAL_ONE_IMAGE
    return template.format(rag=rag, instruct=instruct, question=question), list(refs)
