"""Protocols: MMAD's part order for every shot count, templates, knowledge, option shuffle."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from eval.mmad_files import image_key, question_type
from eval.prompting import build_prompt, shuffled_options
from eval.protocols import OBJECT_TYPES, PROTOCOLS, Protocol, ProtocolError, protocol_named
from iad_pipeline.questions.prompts import (
    IMAGE_PLACEHOLDER,
    MMAD_ANSWER_DIRECTLY,
    MMAD_INSTRUCTION_TEXT,
    MMAD_KNOWLEDGE,
    MMAD_QUERY_INTRO,
    MMAD_QUESTION_LIST,
    MMAD_TEMPLATE_INTRO,
)

ROOT = Path("/data/ALL_DATA")
KEY = "DS-MVTec/bottle/image/crack/000.png"
RANDOM = [f"MVTec-AD/bottle/train/good/{i:03d}.png" for i in (7, 8, 9)]
SIMILAR = [f"MVTec-AD/bottle/train/good/{i:03d}.png" for i in (1, 2, 3)]
TEMPLATES = {KEY: {"random": RANDOM, "similar": SIMILAR}}
DK = " <Crack Defect>\n Description: a thin dark line.\n <Normal Characteristics>\n Description: ok"
KNOWLEDGE = {"MVTec/bottle": DK}
QUESTION = "Question 3: Is there any defect in the object? \nA. Yes.\nB. No.\n"


def row(raw_type: str = "Anomaly Detection", merged: str | None = None, **extra) -> dict:
    """A question row as read_mmad_json builds it (third question of its image)."""
    base = {
        "question_id": "q-0001",
        "style": "mmad",
        "image_path": str(ROOT / KEY),
        "reference_image": str(ROOT / SIMILAR[0]),
        "question": "Is there any defect in the object? \nA. Yes.\nB. No.\n",
        "options": ["Yes.", "No."],
        "answer": "A",
        "mmad_type": merged or raw_type,
        "knowledge_key": "MVTec/bottle",
        "recipe_tags": [f"raw_type:{raw_type}", "mmad_question:3"],
    }
    return base | extra


def expected_text(templates: int, knowledge: bool) -> str:
    """MMAD's payload order, written out from the protocol strings by hand."""
    parts = [MMAD_INSTRUCTION_TEXT, MMAD_ANSWER_DIRECTLY]
    if knowledge:
        parts.append(MMAD_KNOWLEDGE.format(dk=DK))
    if templates:
        parts += [MMAD_TEMPLATE_INTRO.format(k=templates), IMAGE_PLACEHOLDER * templates]
    parts += [MMAD_QUERY_INTRO, IMAGE_PLACEHOLDER, MMAD_QUESTION_LIST, QUESTION]
    return "".join(parts)


@pytest.mark.parametrize(
    ("protocol", "templates", "knowledge"),
    [
        (Protocol(shots=0), [], False),  # query image only
        (Protocol(), RANDOM[:1], False),  # MMAD's published setting
        (Protocol(template="similar"), SIMILAR[:1], False),  # EMIT's template
        (Protocol(shots=2), RANDOM[:2], False),  # k-shot: one sentence, k images
        (Protocol(shots=3, template="similar"), SIMILAR, False),
        (Protocol(shots=0, knowledge=True), [], True),
        (Protocol(template="similar", knowledge=True), SIMILAR[:1], True),  # EMIT's eval
        (Protocol(shots=2, knowledge=True), RANDOM[:2], True),
    ],
    ids=lambda v: v.name if isinstance(v, Protocol) else None,
)
def test_prompt_has_mmads_part_order(protocol, templates, knowledge):
    spec = build_prompt(row(), protocol, TEMPLATES, KNOWLEDGE, ROOT)
    assert spec.text == expected_text(len(templates), knowledge)
    assert spec.images == [ROOT / t for t in templates] + [ROOT / KEY]
    kinds = [b["type"] for b in spec.content_blocks]
    assert kinds.count("image") == len(spec.images)
    # Text and images alternate exactly as MMAD's payload: ..., template(s), query, questions.
    assert kinds[-3:] == ["text", "image", "text"]
    assert spec.content_blocks[-1]["text"] == MMAD_QUESTION_LIST + QUESTION
    assert spec.shots == len(templates) and spec.image == KEY and spec.answer == "A"


RAW_TYPES = [
    ("Anomaly Detection", None, True),
    ("Defect Classification", None, True),
    ("Defect Localization", None, True),
    ("Defect Description", None, True),
    ("Defect Analysis", None, True),
    ("Object Classification", None, False),
    ("Object Structure", "Object Analysis", False),
    ("Object Details", "Object Analysis", False),
]


@pytest.mark.parametrize(("raw_type", "merged", "_emit"), RAW_TYPES)
def test_mmad_gives_knowledge_to_every_question_type(raw_type, merged, _emit):
    # qwen2_5_vl_query.py --domain_knowledge: the knowledge part precedes every question.
    spec = build_prompt(row(raw_type, merged), Protocol(knowledge=True), TEMPLATES, KNOWLEDGE, ROOT)
    assert DK in spec.text
    assert spec.question_type == raw_type


@pytest.mark.parametrize(("raw_type", "merged", "gets_knowledge"), RAW_TYPES)
def test_emits_rule_leaves_knowledge_out_of_object_questions(raw_type, merged, gets_knowledge):
    protocol = Protocol(knowledge=True, knowledge_skip_types=OBJECT_TYPES)
    spec = build_prompt(row(raw_type, merged), protocol, TEMPLATES, KNOWLEDGE, ROOT)
    assert (DK in spec.text) is gets_knowledge
    emit = build_prompt(
        row(raw_type, merged), protocol_named("emit_think"), TEMPLATES, KNOWLEDGE, ROOT
    )
    assert (DK in emit.text) is gets_knowledge


def test_object_question_without_raw_tag_is_skipped_by_its_merged_type():
    r = row("Object Details", "Object Analysis", recipe_tags=[])
    protocol = Protocol(knowledge=True, knowledge_skip_types=OBJECT_TYPES)
    spec = build_prompt(r, protocol, TEMPLATES, KNOWLEDGE, ROOT)
    assert DK not in spec.text and spec.question_type == "Object Analysis"


def test_a_skip_rule_is_part_of_the_name():
    protocol = Protocol(knowledge=True, knowledge_skip_types=OBJECT_TYPES)
    assert protocol.name.startswith("1shot-random+knowledge-skip")
    assert protocol.name != Protocol(knowledge=True).name
    assert protocol_named("emit_think").name == "emit_think-1shot-similar+knowledge"


@pytest.mark.parametrize(
    ("protocol", "name"),
    [
        (Protocol(), "1shot-random"),
        (Protocol(shots=0), "0shot"),
        (Protocol(shots=0, template="similar"), "0shot"),  # no template, same questions
        (Protocol(template="similar", knowledge=True), "1shot-similar+knowledge"),
        (Protocol(knowledge_skip_types=[], knowledge=True), "1shot-random+knowledge"),
        (Protocol(max_pixels=None), "1shot-random+px50176-default"),
        (Protocol(add_vision_id=False), "1shot-random+no_vision_id"),
        (Protocol(mmad_version="corrected"), "1shot-random+mmad_corrected"),
        (protocol_named("emit_direct", shots=0), "emit_direct-0shot+knowledge"),
        (Protocol(shuffle_options=True, seed=7), "1shot-random+shuffle7"),
        (Protocol(seed=7), "1shot-random"),  # the seed only matters when shuffling
        (Protocol(shots=4, answer_rule="think"), "4shot-random+think"),
    ],
)
def test_protocol_names_are_stable(protocol, name):
    assert protocol.name == name


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shots": -1},
        {"shots": 1.5},
        {"shots": True},
        {"template": "best"},
        {"answer_rule": "x"},
        {"style": "gpt4"},
        {"mmad_version": "v2"},
        {"style": "emit", "shots": 2},
        {"max_pixels": "1280"},
    ],
)
def test_invalid_protocols_are_rejected(kwargs):
    with pytest.raises(ProtocolError):
        Protocol(**kwargs)


def test_options_keep_mmads_order_by_default():
    r = row(
        question="Where? \nA. Top.\nB. Left.\nC. Center.\n", options=["Top.", "Left.", "Center."]
    )
    r["answer"] = "C"
    spec = build_prompt(r, Protocol(), TEMPLATES, None, ROOT)
    assert spec.options == {"A": "Top.", "B": "Left.", "C": "Center."} and spec.answer == "C"
    assert spec.text.endswith("Question 3: Where? \nA. Top.\nB. Left.\nC. Center.\n")


def test_option_shuffle_is_seeded_and_remaps_the_answer():
    options = ["Top.", "Left.", "Center.", "Bottom right."]
    r = row(
        question="Where? \n" + "".join(f"{k}. {o}\n" for k, o in zip("ABCD", options, strict=True))
    )
    r |= {"options": options, "answer": "C"}

    def ask(qid: str, seed: int = 0):
        protocol = Protocol(shuffle_options=True, seed=seed)
        return build_prompt(r | {"question_id": qid}, protocol, TEMPLATES, None, ROOT)

    qids = [f"q{i}" for i in range(20)]
    specs = [ask(qid) for qid in qids]
    for spec in specs:
        assert sorted(spec.options.values()) == sorted(options)
        assert spec.options[spec.answer] == "Center."  # the answer follows its text
        lines = "".join(f"{k}. {o}\n" for k, o in spec.options.items())
        assert spec.text.endswith(f"Question 3: Where? \n{lines}")
        assert spec.question == "Where?"
    assert len({tuple(s.options.values()) for s in specs}) > 5  # the order really changes
    assert [ask(qid).options for qid in qids] == [s.options for s in specs]  # same seed
    assert [ask(qid, seed=1).options for qid in qids] != [s.options for s in specs]


@pytest.mark.parametrize(
    ("options", "answer", "seed", "qid"),
    [
        (["Yes", "No"], "B", 0, "a"),
        (["x", "y", "z", "w", "v"], "E", 3, "ünïcode-id"),
        (["a"], "A", 0, "b"),
    ],
)
def test_shuffled_options_are_a_permutation_with_the_answer_text_kept(options, answer, seed, qid):
    shuffled, new = shuffled_options(options, answer, seed, qid)
    assert sorted(shuffled) == sorted(options)
    assert shuffled["ABCDE".index(new)] == options["ABCDE".index(answer)]


def test_shuffle_rejects_an_answer_that_is_no_option():
    with pytest.raises(ProtocolError, match="not the letter"):
        shuffled_options(["Yes", "No"], "C", 0, "q")


def test_missing_templates_and_knowledge_raise_clear_errors():
    with pytest.raises(ProtocolError, match="no templates for it"):
        build_prompt(row(), Protocol(), {}, None, ROOT)
    with pytest.raises(ProtocolError, match="needs 4"):
        build_prompt(row(), Protocol(shots=4, template_shortfall="error"), TEMPLATES, None, ROOT)
    with pytest.raises(ProtocolError, match="needs domain knowledge"):
        build_prompt(row(), Protocol(knowledge=True), TEMPLATES, {}, ROOT)
    with pytest.raises(ProtocolError, match="needs 2 template"):
        build_prompt(row(), Protocol(shots=2), None, None, ROOT)


def test_fewer_templates_than_shots_ask_with_those_there_are_as_mmad_does():
    # qwen2_5_vl_query.py: few_shot = random_templates[:k], and the sentence says len(few_shot).
    spec = build_prompt(row(), Protocol(shots=4), TEMPLATES, None, ROOT)
    assert spec.shots == 3 and MMAD_TEMPLATE_INTRO.format(k=3) in spec.text
    assert spec.images == [ROOT / p for p in RANDOM] + [ROOT / KEY]
    assert Protocol(shots=4, template_shortfall="error").name == "4shot-random+all_shots"


def test_without_a_template_map_one_shot_uses_the_rows_reference_image():
    spec = build_prompt(row(), Protocol(), None, None, ROOT)
    assert spec.images == [ROOT / SIMILAR[0], ROOT / KEY]


def test_an_image_marker_inside_a_question_is_refused():
    r = row(question="Is <image> broken? \nA. Yes.\nB. No.\n")
    with pytest.raises(ProtocolError, match="markers"):
        build_prompt(r, Protocol(), TEMPLATES, None, ROOT)


def test_unicode_question_text_survives():
    r = row(question="Gibt es einen Défaut? ✓ \nA. Ja.\nB. Nein.\n", options=["Ja.", "Nein."])
    spec = build_prompt(r, Protocol(shots=0), TEMPLATES, None, ROOT)
    assert spec.question == "Gibt es einen Défaut? ✓" and spec.options["A"] == "Ja."


@pytest.mark.parametrize(
    ("path", "root", "key"),
    [
        ("/d/VisA/candle/test/bad/1.JPG", "/d", "VisA/candle/test/bad/1.JPG"),
        ("VisA/candle/test/bad/1.JPG", "/d", "VisA/candle/test/bad/1.JPG"),
        ("/elsewhere/VisA/1.JPG", "/d", "/elsewhere/VisA/1.JPG"),
        ("/d/VisA/1.JPG", None, "/d/VisA/1.JPG"),
    ],
)
def test_image_key(path, root, key):
    assert image_key(path, root) == key


def test_question_type_prefers_the_raw_tag():
    assert question_type({"recipe_tags": ["x", "raw_type:Object Details"]}) == "Object Details"
    assert question_type({"recipe_tags": None, "mmad_type": "Defect Analysis"}) == "Defect Analysis"


def test_every_mini_mmad_question_builds_under_every_protocol(
    mini_mmad: Path, mmad_questions: pl.DataFrame, templates, knowledge
):
    protocols = [
        Protocol(shots=0),
        Protocol(),
        Protocol(shots=3, template="similar", knowledge=True),
    ]
    for protocol in protocols:
        for r in mmad_questions.iter_rows(named=True):
            spec = build_prompt(r, protocol, templates, knowledge, mini_mmad)
            assert all(p.is_file() for p in spec.images)
            assert spec.image in templates
            assert spec.options[spec.answer] == r["options"]["ABCDEFGH".index(r["answer"])]


def test_mmad_knowledge_joins_a_categorys_texts_in_file_order(mini_mmad: Path, knowledge):
    import json

    data = json.loads((mini_mmad / "domain_knowledge.json").read_text(encoding="utf-8"))
    dataset, categories = next(iter(data.items()))
    category, entry = next(iter(categories.items()))
    assert knowledge[f"{dataset}/{category}"] == "\n".join(entry.values())


def test_mmad_templates_keep_both_lists(mini_mmad: Path, templates):
    import json

    data = json.loads((mini_mmad / "mmad.json").read_text(encoding="utf-8"))
    key, entry = next(iter(data.items()))
    assert templates[key] == {
        "similar": entry["similar_templates"],
        "random": entry["random_templates"],
    }


def test_the_question_form_asks_with_the_images_and_the_question_alone():
    """A recipe's ``prompt: question``: no instruction, no knowledge, the style's images."""
    emit = protocol_named("emit_think", form="question", knowledge=False, system_prompt=None)
    # no knowledge, no system message (the default chat template's, as in training)
    assert emit.name == "emit_think-1shot-similar+systeme3b0c442+question_only"
    assert emit.record()["prompt_form"] == "question"
    assert "prompt_form" not in PROTOCOLS["emit_think"].record()  # full form: keys unchanged
    spec = build_prompt(row(), emit, TEMPLATES, KNOWLEDGE, ROOT)
    assert spec.text == IMAGE_PLACEHOLDER * 2 + row()["question"]
    assert [b["type"] for b in spec.content_blocks] == ["image", "image", "text"]
    assert spec.images == [ROOT / SIMILAR[0], ROOT / KEY]
    assert spec.system is None
    # EMIT shows Object questions without the template
    obj = build_prompt(row("Object Classification"), emit, TEMPLATES, KNOWLEDGE, ROOT)
    assert obj.text == IMAGE_PLACEHOLDER + row()["question"]
    # MMAD's style keeps its shots; options shuffle as in the full form
    mmad = Protocol(shots=2, form="question", shuffle_options=True, seed=1)
    spec = build_prompt(row(), mmad, TEMPLATES, None, ROOT)
    assert spec.text.startswith(IMAGE_PLACEHOLDER * 3 + "Is there any defect in the object? \n")
    assert spec.options[spec.answer] == "Yes."
    assert mmad.key != Protocol(shots=2, shuffle_options=True, seed=1).key
    # MMAD's bare options are spelt as training writes them, with a full stop
    bare = row(
        question="Is there any defect in the object? \nA. Yes\nB. No\n", options=["Yes", "No"]
    )
    spec = build_prompt(bare, emit, TEMPLATES, None, ROOT)
    assert spec.text.endswith("? \nA. Yes.\nB. No.\n") and spec.options == {"A": "Yes", "B": "No"}


def test_the_question_form_refuses_knowledge():
    with pytest.raises(ProtocolError, match="without domain knowledge"):
        Protocol(form="question", knowledge=True)
    with pytest.raises(ProtocolError, match="form="):
        Protocol(form="short")
