"""Benchmark protocol strings, verbatim, and the one prompt renderer built on them.

This is the only module that holds protocol text. Every constant names the repository and
file it was reproduced from; the strings are data (a protocol is only comparable when its
words are the same), the code around them is ours. :data:`ADFM_PROMPT` is the exception: the
AD-FM release has a system prompt (:data:`ADFM_SYSTEM_PROMPT`) but no user prompt, so that one
is our own wording.

Images are marked in the rendered text by :data:`IMAGE_PLACEHOLDER` (``<image>``, the marker
EMIT's templates use and ms-swift expands), once per image and at the place the protocol puts
it; :func:`prompt_images` lists the matching image paths in the same order and
:func:`to_content` turns the text into chat content blocks for a processor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

IMAGE_PLACEHOLDER = "<image>"
LETTERS = "ABCDEFGH"

# --- MMAD (jam-cc/MMAD, read at commit bad03b44c30fdb4d0e1774e07e0f245fbaae3b6c) -------------
# Ambiguities of the release, and which reading we follow:
# - qwen2_5_vl_query.py imports `GPT4V.gpt4v` (the folder is GPT4) and calls
#   parse_conversation(text_gt, add_question_id=False), which the released gpt4v.py does not
#   accept (TypeError). We follow the code that runs, gpt4v.py: questions numbered
#   "Question {i}: " by their place in the image's conversation.
# - Qwen's content parts: apply_chat_template(..., add_vision_id=True), so every image is
#   preceded by "Picture {n}: "; min_pixels 64*28*28, max_pixels 1280*28*28; the processor's
#   default system prompt ("You are a helpful assistant.") stays; max_new_tokens 128, greedy.
# - `--domain_knowledge` gives the knowledge to every question type (EMIT skips Object ones).
# - The published 1-shot rows have no "_Similar_template" suffix: random_templates[0].
# - gpt4v.py (the GPT-4o rows) asks differently from the Qwen script: the instruction is a
#   system message, the template sentence is MMAD_GPT4_TEMPLATE_INTRO, there is no "Answer
#   ... directly! " part and no knowledge, question i is sent with questions 1..i (the last
#   letter of the answer is kept), images are JPEG <= 512x512 with detail "low", max_tokens 600.
# evaluation/examples/GPT4/gpt4v.py: `instruction`. The source is a triple-quoted literal, so
# the text the model sees starts and ends with a newline (MMAD_INSTRUCTION_TEXT).
MMAD_INSTRUCTION = (
    "You are an industrial inspector who checks products by images. You should judge whether "
    "there is a defect in the query image and answer the questions about it.\n"
    "Answer with the option's letter from the given choices directly."
)
MMAD_INSTRUCTION_TEXT = f"\n{MMAD_INSTRUCTION}\n"
# evaluation/examples/Transformers/qwen2_5_vl_query.py: QwenQuery.get_query, in payload order.
MMAD_ANSWER_DIRECTLY = "Answer with the option's letter from the given choices directly! "
MMAD_KNOWLEDGE = (
    "Following is the domain knowledge which contains some type of defect and the normal "
    "object characteristics: \n {dk}"
)
MMAD_TEMPLATE_INTRO = (
    "Following is/are {k} image of normal sample, which can be used as a template to compare "
    "the image being queried."
)
MMAD_QUERY_INTRO = "Following is the query image: "
MMAD_QUESTION_LIST = "Following is the question list: "
# evaluation/examples/GPT4/gpt4v.py: GPT4Query.parse_conversation (question line, then one
# "A. opt\n" line per option).
MMAD_QUESTION = "Question {i}: {question} \n"
MMAD_OPTION = "{letter}. {text}\n"
# evaluation/examples/GPT4/gpt4v.py: GPT4Query.get_query, the template sentence of the GPT-4o
# script (the Qwen script's MMAD_TEMPLATE_INTRO differs).
MMAD_GPT4_TEMPLATE_INTRO = (
    "Following is {k} image of normal sample, which can be used as a template to compare."
)
# evaluation/examples/Transformers/qwen2_5_vl_query.py: image size bounds of the processor.
MMAD_MIN_PIXELS = 64 * 28 * 28
MMAD_MAX_PIXELS = 1280 * 28 * 28

# evaluation/examples/helper/summary.py: the raw `type` strings of mmad.json and the seven
# reported columns (Object Structure and Object Details merged into Object Analysis).
MMAD_RAW_TYPES = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Structure",
    "Object Details",
)
MMAD_REPORTED_TYPES = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
    "Object Analysis",
)
MMAD_MERGED_TYPE = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}

# --- EMIT (guanwei49/EMIT) ------------------------------------------------------------------
# traindata_gen/make_jonsl.py: get_samples, the one-shot template ({} = domain knowledge, then
# the question).
EMIT_TWO_IMAGE_TEMPLATE = (
    "Image-1: <image>\nImage-2: <image>\nI have uploaded two images for review, each featuring "
    "a product. The product shown in the first image appears to be in perfect condition, free "
    "of any defects. To answer a multiple-choice question, please inspect the product in the "
    "second image. There is only one correct option.\nThe following provides domain knowledge "
    "regarding the characteristics of a normal product, as well as the various possible types "
    "of defects: {}\nSelect your answer by responding with the letter corresponding to the "
    "correct option, such as 'A'. Begin by documenting your analysis process within <think> "
    "</think> tags. Conclude with your final answer enclosed in <answer> </answer> tags. The "
    "final answer should be either 'A' or 'B' or 'C' or 'D'. The output format should be as "
    "follows: <think>...</think><answer>...</answer>. Please adhere strictly to the prescribed "
    "format.\n\nQuestion: {}"
)
# traindata_gen/make_jonsl.py: get_samples, the object-classification template.
EMIT_ONE_IMAGE_TEMPLATE = (
    "Query image: <image>\nTo answer a multiple-choice question, please inspect the product in "
    "the given image. There is only one correct option.\nSelect your answer by responding with "
    "the letter corresponding to the correct option, such as 'A'. Begin by documenting your "
    "analysis process within <think> </think> tags. Conclude with your final answer enclosed "
    "in <answer> </answer> tags. The final answer should be either 'A' or 'B' or 'C' or 'D'. "
    "The output format should be as follows: <think>...</think><answer>...</answer>. Please "
    "adhere strictly to the prescribed format.\n\nQuestion: {}"
)
# traindata_gen/make_jonsl.py: get_samples, one question per task ({options} = "A. x\nB. y").
EMIT_QUESTIONS = {
    "anomaly_detection": "Is there any defect in the object? \n{options}\n",
    "defect_classification": (
        "There is a defect in the object. What is the type of the defect? \n{options}\n"
    ),
    "defect_localization": "There is a defect in the object. Where is the defect? \n{options}\n",
    "object_classification": "What kind of product is in the image? \n{options}\n",
}
# traindata_gen/make_jonsl.py: anomaly_detection_choices.
EMIT_YES, EMIT_NO = "Yes.", "No."
# traindata_gen/make_jonsl.py: `regions`, the wordings of each 3x3 grid region.
EMIT_LOCATION_WORDS: dict[str, tuple[str, ...]] = {
    "top left": ("Top left.", "Left top.", "Upper left.", "Left upper."),
    "top": ("Top.", "Top center.", "Summit."),
    "top right": ("Top right.", "Right top.", "Upper right.", "Right upper."),
    "left": ("Left.", "Leftward.", "Left-hand."),
    "center": ("Center.", "Middle."),
    "right": ("Right.", "Rightward.", "Right-hand."),
    "bottom left": ("Bottom left.", "Left bottom.", "Lower left.", "Left lower."),
    "bottom": ("Bottom.", "Bottom center.", "Below."),
    "bottom right": ("Bottom right.", "Right bottom.", "Lower right.", "Right lower."),
}
GRID_REGIONS = tuple(EMIT_LOCATION_WORDS)
# Stage2.sh (--system sysprompt.txt): the system prompt of EMIT's GRPO stage and evaluation
# (sysprompt.txt, no trailing newline).
EMIT_SYSTEM_PROMPT = "You are an industrial inspector who checks products by images."

# evaluate_batch_mmad_choice.py (guanwei49/EMIT 01dc319236eda9be13e14918cf9a5bf0d5c7a030),
# EMIT's MMAD evaluation. MMADDataset.instruct, the think and the direct variants:
EMIT_EVAL_THINK = (
    "Begin by documenting your analysis process within <think> </think> tags. Conclude with "
    "your final answer enclosed in <answer> </answer> tags. The final answer should be either "
    "'A' or 'B' or 'C' or 'D'. The output format should be as follows: "
    "<think>...</think><answer>...</answer>. Please adhere strictly to the prescribed format."
)
EMIT_EVAL_DIRECT = "Do not include any text in your response."
# MMADDataset.__getitem__: `rag` for Anomaly Detection and Defect* questions: this prefix and
# the category's knowledge values joined by "\n", with nothing between (MMAD's values start
# with a space, hence one space after "defects:"); "" for the other types.
EMIT_EVAL_KNOWLEDGE = (
    "The following provides domain knowledge regarding the characteristics of a normal "
    "product, as well as the various possible types of defects:"
)
# The one-shot prompt (Anomaly Detection and Defect*, similar_templates[0] then the query);
# {rag}, {instruct}, {question} = "{Question} \n" + "A. opt\n" per option (original keys).
EMIT_EVAL_TWO_IMAGE = (
    "Image-1: <image>\nImage-2: <image>\nI have uploaded two images for review, each featuring "
    "a product. The product shown in the first image appears to be in perfect condition, free "
    "of any defects. To answer a multiple-choice question, please inspect the product in the "
    "second image. There is only one correct option.\n{rag}\nSelect your answer by responding "
    "with the letter corresponding to the correct option, such as 'A'. {instruct}\n\n"
    "Question: {question}"
)
# The query-only prompt (Object questions); "Question:" has no space after it in the original.
EMIT_EVAL_ONE_IMAGE = (
    "Query image: <image>\nTo answer a multiple-choice question, please inspect the product in "
    "the given image. There is only one correct option.\n{rag}\nSelect your answer by "
    "responding with the letter corresponding to the correct option, such as 'A'. "
    "{instruct}\n\nQuestion:{question}"
)
# eval_benchmark/evaluate_batch_mmad_choice_QWEN.py: EMIT's Qwen2.5-VL harness bounds.
EMIT_QWEN_MIN_PIXELS = 256 * 28 * 28
EMIT_QWEN_MAX_PIXELS = 1280 * 28 * 28

# --- AnomalyR1 (chaoyuhao/AnomalyR1) --------------------------------------------------------
# open-r1-multimodal/src/open_r1/grpo_rec.py: the question template. "answer.Respond" (no
# space) is in the original.
ANOMALYR1_TEMPLATE = (
    "{problem} A conversation between User and Assistant. The user asks a choice question, and "
    "the Assistant solves it. The assistant first thinks about the reasoning process in the mind "
    "and then provides the user with the answer.Respond with your reasoning in <think> </think> "
    "tags followed by a single letter answer in <answer> </answer> tags."
)

# --- LR-IAD (paper only: arXiv 2504.19524, section III-D; the repository is empty) ----------
LR_IAD_TEMPLATE = (
    "This is an image containing a {object_name}. Analyze the given image and determine if "
    "there is any defect in the object.\nOutput the thinking process in <think> </think> and "
    "final answer in <answer> </answer> tags.\nOptions: (A) defect (B) normal.\nThe output "
    "answer format should be as follows:\n<think></think> <answer>A or B</answer>\nPlease "
    "strictly follow the format."
)
LR_IAD_OPTIONS = ("defect", "normal")  # (A) defect, (B) normal

# --- AD-FM (hanawall/AD-FM cd5416b1d144b7a69438011f2d02ce5e09d8e273) -------------------------
# scripts/grpo/prompt.txt (its final newline left out): the system prompt shipped with the
# reward plugin, R1's wording.
ADFM_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think><answer> answer here </answer>"
)
# OUR OWN WORDING, not protocol: AD-FM releases no user prompt (only the system prompt
# above). This prompt asks for what its rewards read: boxes
# [x1, y1, x2, y2] inside the first <think> block (pixels of the resized model input), a
# <rethink> block, and "a" (anomalous) or "b" (normal) in <answer>.
ADFM_PROMPT = (
    "Inspect the {object_name} in this image ({width}x{height} pixels) for defects.\n"
    "First, inside <think> </think>, describe the object and list every suspicious region as a "
    "bounding box [x1, y1, x2, y2] in pixel coordinates of this image.\n"
    "Then, inside <rethink> </rethink>, examine each listed region again and decide whether it "
    "is a real defect.\n"
    "Finally, answer inside <answer> </answer>: <answer>a</answer> if the object is anomalous, "
    "<answer>b</answer> if it is normal."
)
ADFM_OPTIONS = ("anomalous", "normal")  # answers "a" and "b"

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


# --- EMIT domain knowledge (guanwei49/EMIT) -------------------------------------------------
# traindata_gen/gen_domain_knowledge.py: the prompts EMIT sent to gpt-4-turbo, images
# downscaled to at most 512 px on the long side and sent as base64. The defect prompt comes
# with three images in this order: a similar normal image, the defect image, its mask.
EMIT_DEFECT_KNOWLEDGE_PROMPT = (
    "I am providing three images. The first two images feature the object labeled "
    '"{object_name}". In the first image, the object is in good condition. The second image '
    'displays a "{anomaly_type}" defect, while the third image presents a mask highlighting the '
    "defect identified in the second image. Your task is to specify the visual characteristics "
    'of the "{anomaly_type}" defect occurring on the object. Instead of describing the defect '
    "in a specific image, generate descriptive text that enables others to identify whether "
    '"{object_name}" in other images exhibits this kind of defect.'
)
# The normal prompt comes with one normal image; {defects} = the category's stored defect
# texts joined by "\n".
EMIT_NORMAL_KNOWLEDGE_PROMPT = (
    'This image depicts a "{object_name}" in good condition. The following are some potential '
    "defects that objects may encounter: {defects}. Your task is to define the visual "
    'characteristics of a standard "{object_name}" and briefly describe it. Do not output any '
    'other text, only the visual characteristics of the standard "{object_name}", and try not '
    "to describe it with points."
)
# How the answers are stored (newlines inside the model's description become spaces).
EMIT_DEFECT_KNOWLEDGE_HEADER = "<{title} Defect>\n Description: "
EMIT_NORMAL_KNOWLEDGE_HEADER = "<Normal Characteristics>\n Description: "

# --- Text samples: OUR OWN WORDING, not protocol ---------------------------------------------
# EMIT's Fig. 6 prompts (a normal image described as if it had a defect at a location, and a
# plain description) are not public. These are ours: each comes with one normal image, and
# {location} is one of the 3x3 region names of iad_pipeline.annotate.REGIONS ("top left", ...).
TEXT_SAMPLE_DEFECT_PROMPT = (
    'This image shows a "{object_name}" in good condition. Imagine the same object with a '
    '"{anomaly_type}" defect located in the {location} part of the image. Write a '
    "self-contained description of that defective object, detailed enough that someone could "
    "use it in place of the image: describe the object's appearance as seen here (shape, "
    "colour, material, background, position in the frame) and the defect's appearance, size "
    "and position. Describe it as if the defect were really there; do not mention that it is "
    "imagined, and output only the description."
)
TEXT_SAMPLE_NORMAL_PROMPT = (
    'This image shows a "{object_name}" in good condition. Write a self-contained description '
    "of the object in this image, detailed enough that someone could use it in place of the "
    "image: its shape, colour, material, surface, background and position in the frame. "
    "Output only the description."
)
