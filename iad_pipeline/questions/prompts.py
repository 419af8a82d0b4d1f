"""The one prompt renderer, built on the benchmark protocol strings.

The strings themselves are data and live, verbatim with their sources, in
:mod:`iad_pipeline.questions.protocol_strings`; every one of them is importable from here too.
The code around them is ours.

Images are marked in the rendered text by :data:`IMAGE_PLACEHOLDER` (``<image>``, the marker
EMIT's templates use and ms-swift expands), once per image and at the place the protocol puts
it; :func:`prompt_images` lists the matching image paths in the same order and
:func:`to_content` turns the text into chat content blocks for a processor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# the strings are part of this module's interface (importers name them from here)
from iad_pipeline.questions.protocol_strings import *  # noqa: F403
from iad_pipeline.questions.protocol_strings import (
    ANOMALYR1_TEMPLATE,
    EMIT_ONE_IMAGE_TEMPLATE,
    EMIT_TWO_IMAGE_TEMPLATE,
    IMAGE_PLACEHOLDER,
    LETTERS,
    MMAD_ANSWER_DIRECTLY,
    MMAD_INSTRUCTION_TEXT,
    MMAD_KNOWLEDGE,
    MMAD_OPTION,
    MMAD_QUERY_INTRO,
    MMAD_QUESTION_LIST,
    MMAD_TEMPLATE_INTRO,
)

CHOICE_STYLES = ("emit", "anomalyr1", "mmad")
STYLES = ("emit", "anomalyr1", "lr_iad", "adfm", "mmad")


class PromptError(ValueError):
    """A question row that cannot be rendered in the requested style."""


def emit_name(name: str) -> str:
    """A folder name as EMIT words it in options: digits dropped, ``_`` to space, capitalised.

    The rule is EMIT's (``process_string`` in ``traindata_gen/make_jonsl.py``): Python's
    ``str.capitalize`` (so the rest is lower-cased) before the strip, then a full stop.

    >>> emit_name("broken_large"), emit_name("pcb1"), emit_name("PCB_board")
    ('Broken large.', 'Pcb.', 'Pcb board.')
    >>> emit_name("Woven_001"), emit_name("macaroni2")
    ('Woven.', 'Macaroni.')
    """
    return re.sub(r"\d+", "", name).replace("_", " ").capitalize().strip() + "."


def format_options(options: Sequence[str]) -> str:
    """Options as lettered lines joined by newlines, no trailing newline (EMIT and MMAD).

    >>> format_options(["No.", "Yes."])
    'A. No.\\nB. Yes.'
    """
    lines = (MMAD_OPTION.format(letter=LETTERS[i], text=text) for i, text in enumerate(options))
    return "".join(lines).removesuffix("\n")


def format_question(bare: str, options: Sequence[str]) -> str:
    """The question as both EMIT and MMAD lay it out: ``"{bare} \\n" + "A. x\\n" ...``.

    EMIT's ``f"...? \\n{options}\\n"`` and MMAD's ``f"{Q} \\n{options_text}"`` give the same
    characters, so one stored ``question`` serves both protocols.

    >>> format_question("Is there any defect in the object?", ["No.", "Yes."])
    'Is there any defect in the object? \\nA. No.\\nB. Yes.\\n'
    """
    return f"{bare} \n{format_options(options)}\n"


def bare_question(question: str, options: Sequence[str]) -> str:
    """Undo :func:`format_question`; a question in another layout comes back unchanged.

    >>> bare_question("Where? \\nA. Top.\\nB. Left.\\n", ["Top.", "Left."])
    'Where?'
    >>> bare_question("Is it broken?", ["Yes"])
    'Is it broken?'
    """
    suffix = f" \n{format_options(options)}\n"
    return question[: -len(suffix)] if question.endswith(suffix) else question


def _style_of(row: Mapping[str, Any], style: str | None) -> str:
    own = row.get("style") or "emit"
    style = style or own
    if style not in STYLES:
        msg = f"unknown prompt style {style!r}; valid styles: {', '.join(STYLES)}"
        raise PromptError(msg)
    if style != own and not (style in CHOICE_STYLES and own in CHOICE_STYLES):
        msg = (
            f"question {row.get('question_id')!r} has style {own!r}; it can only be rendered "
            f"as {own!r} (the choice styles {', '.join(CHOICE_STYLES)} can stand in for each "
            "other); build the question in the style you need"
        )
        raise PromptError(msg)
    return style


def _uses_reference(row: Mapping[str, Any], style: str) -> bool:
    if not row.get("reference_image"):
        return False
    if style == "mmad":
        return True
    return style == "emit" and row.get("task") != "object_classification"


def prompt_images(row: Mapping[str, Any], *, style: str | None = None) -> list[str]:
    """The image paths of :func:`render_prompt`'s text, in placeholder order.

    >>> prompt_images({"style": "emit", "task": "anomaly_detection", "image_path": "q.png",
    ...                "reference_image": "t.png"})
    ['t.png', 'q.png']
    >>> prompt_images({"style": "anomalyr1", "image_path": "q.png", "reference_image": "t.png"})
    ['q.png']
    """
    style = _style_of(row, style)
    query = str(row["image_path"])
    return [str(row["reference_image"]), query] if _uses_reference(row, style) else [query]


def _mmad_number(row: Mapping[str, Any]) -> int:
    for tag in row.get("recipe_tags") or ():
        if tag.startswith("mmad_question:"):
            return int(tag.split(":", 1)[1])
    return 1


def render_prompt(
    question_row: Mapping[str, Any], *, knowledge: str | None = None, style: str | None = None
) -> str:
    """The full user text of one question row, in its style (or ``style``, see below).

    One renderer serves training and evaluation, so a model is scored on exactly the text it
    was trained on. Token-level choices:

    - **Images** are :data:`IMAGE_PLACEHOLDER` markers where the protocol puts them. EMIT's
      templates carry them (``Image-1: <image>`` = the normal template, ``Image-2`` = the
      query); MMAD's payload has an image part after the template sentence and after
      ``"Following is the query image: "``; AnomalyR1, LR-IAD and AD-FM send the image as a
      content part before the text, so the marker leads with no separator, exactly as a chat
      template concatenates content parts. :func:`to_content` splits at the markers (Qwen's
      template with ``add_vision_id`` then adds MMAD's ``Picture 1:`` labels itself).
    - **Options** are ``"A. text"`` lines, each ending in a newline, after ``"{question} \\n"``
      (the space before the newline is in both EMIT and MMAD). The final newline matters: the
      model's answer starts on a fresh line, as in every protocol that trained or scored it.
    - **mmad**: parts joined with nothing between them, as Qwen's chat template joins text
      parts: instruction (with its surrounding newlines), ``"Answer with ... directly! "``,
      domain knowledge if given, the template sentence and image if the row has a reference
      image (1-shot, else 0-shot), the query sentence and image, the question list line, and
      ``"Question {i}: ..."`` with MMAD's number of the question in its image's conversation
      (recipe tag ``mmad_question:i``; 1 when absent).
    - **emit**: the two-image template with ``knowledge`` (``""`` when none) when the row has
      a reference image; object classification, and rows without a reference, use EMIT's
      one-image template (EMIT gives object questions no knowledge either).
    - **anomalyr1**: the question with options as ``{problem}``; **lr_iad** and **adfm**: the
      stored question, which is already the whole protocol text.

    ``style`` renders a choice row (emit, anomalyr1, mmad) in another choice style, e.g. an
    MMAD question in EMIT's template as EMIT's own MMAD evaluation does; binary rows render only
    in their own style.

    >>> row = {"style": "mmad", "task": "anomaly_detection", "image_path": "q.png",
    ...        "reference_image": None, "question": "Is there any defect? \\nA. Yes\\nB. No\\n"}
    >>> render_prompt(row).split("<image>")[1]
    'Following is the question list: Question 1: Is there any defect? \\nA. Yes\\nB. No\\n'
    >>> render_prompt(row, style="anomalyr1")[:41]
    '<image>Is there any defect? \\nA. Yes\\nB. No'
    """
    style = _style_of(question_row, style)
    question = str(question_row["question"])
    if style == "emit":
        if _uses_reference(question_row, style):
            return EMIT_TWO_IMAGE_TEMPLATE.format(knowledge or "", question)
        return EMIT_ONE_IMAGE_TEMPLATE.format(question)
    if style == "anomalyr1":
        return IMAGE_PLACEHOLDER + ANOMALYR1_TEMPLATE.format(problem=question)
    if style in ("lr_iad", "adfm"):
        return IMAGE_PLACEHOLDER + question
    parts = [MMAD_INSTRUCTION_TEXT, MMAD_ANSWER_DIRECTLY]
    if knowledge:
        parts.append(MMAD_KNOWLEDGE.format(dk=knowledge))
    if _uses_reference(question_row, style):
        parts += [MMAD_TEMPLATE_INTRO.format(k=1), IMAGE_PLACEHOLDER]
    parts += [MMAD_QUERY_INTRO, IMAGE_PLACEHOLDER, MMAD_QUESTION_LIST]
    parts.append(f"Question {_mmad_number(question_row)}: {question}")
    return "".join(parts)


_OPTION_LINE = re.compile(r"^([A-Z]\. [^\n]*[^.?!\n])$", re.M)


def question_only(question: str, n_images: int) -> str:
    """Our short prompt form (recipe ``prompt: question``, protocol ``form="question"``): the
    images, then the question with its options, and nothing else -- no instruction, no domain
    knowledge. Not a benchmark's protocol: for small models whose CPU steps grow with the
    prompt, and the same text in training and in evaluation.

    Option texts end in a full stop, as EMIT's training questions write them (MMAD's are bare:
    ``Yes``); a model then reads one spelling of each option wherever the question came from.

    >>> question_only("Is there any defect? \\nA. Yes\\nB. No.\\n", 2)
    '<image><image>Is there any defect? \\nA. Yes.\\nB. No.\\n'
    """
    if n_images < 1:
        msg = f"question_only: n_images={n_images!r}; a question shows at least its query image"
        raise PromptError(msg)
    if IMAGE_PLACEHOLDER in question:
        msg = f"question {question[:40]!r}... holds the image marker {IMAGE_PLACEHOLDER!r}"
        raise PromptError(msg)
    head, sep, options = question.partition(" \n")
    return IMAGE_PLACEHOLDER * n_images + head + sep + _OPTION_LINE.sub(r"\1.", options)


def to_content(text: str) -> list[dict[str, str]]:
    """Chat content blocks of a rendered prompt: text parts and one ``image`` block per marker.

    Trainers pass these as the user message's ``content``: TRL, given a plain string, would put
    every image before the text and keep the markers as literal text.

    >>> to_content("Image-1: <image>\\nQ")
    [{'type': 'text', 'text': 'Image-1: '}, {'type': 'image'}, {'type': 'text', 'text': '\\nQ'}]
    """
    blocks: list[dict[str, str]] = []
    for i, part in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if i:
            blocks.append({"type": "image"})
        if part:
            blocks.append({"type": "text", "text": part})
    return blocks
