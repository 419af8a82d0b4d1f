"""Protocol strings stay verbatim and render_prompt lays out each protocol's parts in order."""

from __future__ import annotations

import pytest

from iad_pipeline.questions import prompts as p
from iad_pipeline.questions.prompts import (
    IMAGE_PLACEHOLDER,
    PromptError,
    emit_name,
    format_question,
    prompt_images,
    render_prompt,
    to_content,
)

# Each protocol string as the brief quotes it from its source; a change here is a change of
# protocol, never a refactor.
VERBATIM = {
    "MMAD_INSTRUCTION": (
        "You are an industrial inspector who checks products by images. You should judge whether"
        " there is a defect in the query image and answer the questions about it.\nAnswer with "
        "the option's letter from the given choices directly."
    ),
    "MMAD_ANSWER_DIRECTLY": "Answer with the option's letter from the given choices directly! ",
    "MMAD_KNOWLEDGE": (
        "Following is the domain knowledge which contains some type of defect and the normal "
        "object characteristics: \n {dk}"
    ),
    "MMAD_QUERY_INTRO": "Following is the query image: ",
    "MMAD_QUESTION_LIST": "Following is the question list: ",
    "MMAD_QUESTION": "Question {i}: {question} \n",
    "EMIT_SYSTEM_PROMPT": "You are an industrial inspector who checks products by images.",
    "LR_IAD_TEMPLATE": (
        "This is an image containing a {object_name}. Analyze the given image and determine if "
        "there is any defect in the object.\nOutput the thinking process in <think> </think> and"
        " final answer in <answer> </answer> tags.\nOptions: (A) defect (B) normal.\nThe output "
        "answer format should be as follows:\n<think></think> <answer>A or B</answer>\nPlease "
        "strictly follow the format."
    ),
    "ANOMALYR1_TEMPLATE": (
        "{problem} A conversation between User and Assistant. The user asks a choice question, "
        "and the Assistant solves it. The assistant first thinks about the reasoning process in "
        "the mind and then provides the user with the answer.Respond with your reasoning in "
        "<think> </think> tags followed by a single letter answer in <answer> </answer> tags."
    ),
}
EMIT_TAIL = (
    "Select your answer by responding with the letter corresponding to the correct option, "
    "such as 'A'. Begin by documenting your analysis process within <think> </think> tags. "
    "Conclude with your final answer enclosed in <answer> </answer> tags. The final answer "
    "should be either 'A' or 'B' or 'C' or 'D'. The output format should be as follows: "
    "<think>...</think><answer>...</answer>. Please adhere strictly to the prescribed format."
    "\n\nQuestion: {}"
)
EMIT_TWO = (
    "Image-1: <image>\nImage-2: <image>\nI have uploaded two images for review, each featuring a "
    "product. The product shown in the first image appears to be in perfect condition, free of "
    "any defects. To answer a multiple-choice question, please inspect the product in the second "
    "image. There is only one correct option.\nThe following provides domain knowledge regarding "
    "the characteristics of a normal product, as well as the various possible types of defects: "
    "{}\n" + EMIT_TAIL
)
EMIT_ONE = (
    "Query image: <image>\nTo answer a multiple-choice question, please inspect the product in "
    "the given image. There is only one correct option.\n" + EMIT_TAIL
)


@pytest.mark.parametrize(("name", "text"), sorted(VERBATIM.items()))
def test_protocol_constants_are_verbatim(name: str, text: str) -> None:
    assert getattr(p, name) == text


def test_emit_templates_and_questions_are_verbatim() -> None:
    assert p.EMIT_TWO_IMAGE_TEMPLATE == EMIT_TWO
    assert p.EMIT_ONE_IMAGE_TEMPLATE == EMIT_ONE
    assert p.EMIT_QUESTIONS == {
        "anomaly_detection": "Is there any defect in the object? \n{options}\n",
        "defect_classification": (
            "There is a defect in the object. What is the type of the defect? \n{options}\n"
        ),
        "defect_localization": (
            "There is a defect in the object. Where is the defect? \n{options}\n"
        ),
        "object_classification": "What kind of product is in the image? \n{options}\n",
    }
    assert (p.EMIT_YES, p.EMIT_NO) == ("Yes.", "No.")
    assert p.EMIT_LOCATION_WORDS["center"] == ("Center.", "Middle.")
    assert p.EMIT_LOCATION_WORDS["bottom"] == ("Bottom.", "Bottom center.", "Below.")
    assert p.EMIT_LOCATION_WORDS["top left"] == (
        "Top left.",
        "Left top.",
        "Upper left.",
        "Left upper.",
    )
    assert len(p.EMIT_LOCATION_WORDS) == 9
    words = [w for ws in p.EMIT_LOCATION_WORDS.values() for w in ws]
    assert len(words) == len(set(words)) == 30


def test_mmad_types_and_template_sentence() -> None:
    assert len(p.MMAD_RAW_TYPES) == 8 and len(p.MMAD_REPORTED_TYPES) == 7
    assert p.MMAD_TEMPLATE_INTRO.format(k=1) == (
        "Following is/are 1 image of normal sample, which can be used as a template to compare "
        "the image being queried."
    )
    assert set(p.MMAD_MERGED_TYPE) == {"Object Structure", "Object Details"}
    merged = {p.MMAD_MERGED_TYPE.get(t, t) for t in p.MMAD_RAW_TYPES}
    assert merged == set(p.MMAD_REPORTED_TYPES)


def test_adfm_prompt_is_ours_and_asks_for_what_its_rewards_read() -> None:
    text = p.ADFM_PROMPT.format(object_name="bottle", width=504, height=504)
    for part in ("<think>", "<rethink>", "[x1, y1, x2, y2]", "<answer>a</answer>", "504x504"):
        assert part in text


@pytest.mark.parametrize(
    ("name", "worded"),
    [
        ("broken_large", "Broken large."),  # EMIT's example
        ("pcb1", "Pcb."),  # digits dropped
        ("macaroni2", "Macaroni."),
        ("Woven_001", "Woven."),  # digits, then the trailing space stripped
        ("PCB_board", "Pcb board."),  # str.capitalize lower-cases the rest
        ("_left", "left."),  # capitalize before strip: the space took the capital
        ("ünïcode_flaw", "Ünïcode flaw."),
    ],
)
def test_emit_name(name: str, worded: str) -> None:
    assert emit_name(name) == worded


def row(style: str = "mmad", task: str = "anomaly_detection", **extra) -> dict:
    base = {
        "question_id": "q",
        "style": style,
        "task": task,
        "question": format_question("Is there any defect in the object?", ["Yes", "No"]),
        "options": ["Yes", "No"],
        "image_path": "/d/query.png",
        "reference_image": "/d/template.png",
        "recipe_tags": [],
    }
    return {**base, **extra}


def test_mmad_parts_come_in_mmad_order() -> None:
    text = render_prompt(row(), knowledge="<Normal Characteristics>")
    parts = [
        "\n" + p.MMAD_INSTRUCTION + "\n",
        p.MMAD_ANSWER_DIRECTLY,
        p.MMAD_KNOWLEDGE.format(dk="<Normal Characteristics>"),
        p.MMAD_TEMPLATE_INTRO.format(k=1),
        IMAGE_PLACEHOLDER,
        p.MMAD_QUERY_INTRO,
        IMAGE_PLACEHOLDER,
        p.MMAD_QUESTION_LIST,
        "Question 1: Is there any defect in the object? \nA. Yes\nB. No\n",
    ]
    assert text == "".join(parts)
    assert prompt_images(row()) == ["/d/template.png", "/d/query.png"]


def test_mmad_zero_shot_without_knowledge_and_its_question_number() -> None:
    r = row(reference_image=None, recipe_tags=["raw_type:Anomaly Detection", "mmad_question:3"])
    text = render_prompt(r)
    assert p.MMAD_TEMPLATE_INTRO.format(k=1) not in text
    assert "domain knowledge" not in text
    assert text.count(IMAGE_PLACEHOLDER) == 1
    assert text.endswith("list: Question 3: Is there any defect in the object? \nA. Yes\nB. No\n")


def test_emit_two_image_and_object_templates() -> None:
    r = row("emit")
    assert render_prompt(r, knowledge="K") == EMIT_TWO.format("K", r["question"])
    assert render_prompt(r) == EMIT_TWO.format("", r["question"])
    obj = row("emit", "object_classification")
    assert render_prompt(obj, knowledge="K") == EMIT_ONE.format(obj["question"])
    assert prompt_images(obj) == ["/d/query.png"]
    # Without a reference image EMIT's two-image template cannot be filled: one image only.
    alone = row("emit", reference_image=None)
    assert render_prompt(alone) == EMIT_ONE.format(alone["question"])


def test_anomalyr1_lr_iad_and_adfm_lead_with_the_image() -> None:
    r = row("anomalyr1")
    text = render_prompt(r, knowledge="ignored")
    assert text == IMAGE_PLACEHOLDER + VERBATIM["ANOMALYR1_TEMPLATE"].format(problem=r["question"])
    assert "answer.Respond" in text
    lr = row("lr_iad", "binary_anomaly", question=p.LR_IAD_TEMPLATE.format(object_name="x"))
    assert render_prompt(lr) == IMAGE_PLACEHOLDER + lr["question"]


@pytest.mark.parametrize("style", ["emit", "anomalyr1", "mmad"])
@pytest.mark.parametrize("task", ["anomaly_detection", "object_classification"])
@pytest.mark.parametrize("reference", ["/d/template.png", None])
def test_one_marker_per_image(style: str, task: str, reference: str | None) -> None:
    r = row(style, task, reference_image=reference)
    text = render_prompt(r)
    assert text.count(IMAGE_PLACEHOLDER) == len(prompt_images(r))
    blocks = to_content(text)
    assert sum(b["type"] == "image" for b in blocks) == len(prompt_images(r))
    assert "".join(b.get("text", IMAGE_PLACEHOLDER) for b in blocks) == text


def test_choice_styles_stand_in_for_each_other_binary_ones_do_not() -> None:
    assert render_prompt(row("mmad"), style="emit").startswith("Image-1: <image>")
    with pytest.raises(PromptError, match="lr_iad"):
        render_prompt(row("lr_iad", "binary_anomaly"), style="emit")
    with pytest.raises(PromptError, match="valid styles"):
        render_prompt(row(), style="llava")
