"""No text breaks a reward or a parser: any input gives a finite float or None, never raises."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iad_pipeline import answers
from training.rewards import REWARDS, get_reward

ATOMS = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<rethink>",
    "</rethink>",
    "<THINK>",
    "< answer >",
    "A",
    "B",
    "a",
    "b",
    "E",
    "ANSWER",
    "答案",
    "。",
    "[",
    "]",
    ", ",
    "12",
    "504.5",
    "-3",
    "1e999",
    "9" * 400,
    '{"bbox_2d": [',
    "\n",
    " ",
]
structured = st.lists(st.sampled_from(ATOMS), max_size=60).map("".join)
texts = st.one_of(st.text(), structured, st.none(), st.integers(), st.binary())
completions = st.one_of(texts, texts.map(lambda t: [{"role": "assistant", "content": t}]))
solutions = st.one_of(st.sampled_from(["A", "B", "C", "D", "a", "b"]), st.text(max_size=5))
coords = st.floats(min_value=0, max_value=2000, allow_nan=False)
gt_boxes = st.lists(st.lists(coords, min_size=4, max_size=4), max_size=4)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(name: str):
    return get_reward(name, **({"num_generations": 3} if name == "focal" else {}))


def finite_or_none(values: list) -> bool:
    return all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in values)


@pytest.mark.parametrize("name", sorted(REWARDS))
@SETTINGS
@given(data=st.data())
def test_any_completion_gives_a_finite_reward(name, data):
    batch = data.draw(st.lists(completions, min_size=1, max_size=6))
    n = len(batch)
    columns = {
        "solution": data.draw(st.lists(solutions, min_size=n, max_size=n)),
        "boxes": data.draw(st.lists(gt_boxes, min_size=n, max_size=n)),
        "completion_ids": data.draw(
            st.lists(st.lists(st.integers(0, 9), max_size=1100), min_size=n, max_size=n)
        ),
        "answer_logprob": data.draw(st.lists(st.floats(max_value=0.0), min_size=n, max_size=n)),
    }
    rewards = build(name)(batch, **columns)
    assert len(rewards) == n
    assert finite_or_none(rewards)


HUGE = [
    "x" * 2_000_000,
    "<think>" * 20_000 + "</answer>" * 20_000,
    "A " * 500_000,
    "[1, 2, 3, 4] " * 50_000,
    "\u00e9\u4e2d\U0001f600 " * 200_000,
]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REWARDS))
def test_huge_completions_give_finite_rewards(name):
    n = len(HUGE)
    rewards = build(name)(
        HUGE, solution=["A"] * n, boxes=[[[1, 2, 3, 4]]] * n, completion_ids=[None] * n
    )
    assert finite_or_none(rewards)


PARSERS = [
    answers.completion_text,
    answers.answer_text,
    answers.answer_letter,
    answers.think_letter,
    answers.mmad_letter,
    answers.anomalyr1_choice,
    answers.emit_choice,
    answers.emit_normalise,
    answers.boxes_from_text,
    lambda t: answers.tag_blocks(t, "think"),
    lambda t: answers.first_tag(t, "answer", dotall=False),
    lambda t: answers.last_tag(t, "answer", loose=True),
    lambda t: answers.mmad_letter(t, {"A": "Yes.", "B": "No."}),
    lambda t: answers.think_letter(t, ["Yes.", "No."]),
    lambda t: answers.boxes_from_text(t, strict=True),
]


@pytest.mark.parametrize("parse", PARSERS)
@SETTINGS
@given(text=texts)
def test_parsers_never_raise(parse, text):
    result = parse(text)
    assert result is None or isinstance(result, str | list)
    if isinstance(result, list) and result and isinstance(result[0], list):
        assert all(len(b) == 4 and all(math.isfinite(v) and v >= 0 for v in b) for b in result)


@pytest.mark.slow
@pytest.mark.parametrize("parse", PARSERS)
def test_parsers_on_huge_text(parse):
    for text in HUGE:
        result = parse(text)
        assert result is None or isinstance(result, str | list)
