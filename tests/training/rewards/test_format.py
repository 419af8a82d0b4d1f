"""format (EMIT / ms-swift) and multi_stage_format (AD-FM) on hand-written completions."""

from __future__ import annotations

import pytest

from training.rewards import get_reward
from training.rewards.format import multi_stage_format_score, think_answer_format

FORMAT_CASES = [
    ("<think>reasoning</think><answer>A</answer>", 1.0),
    ("<think>r</think>\n\n<answer>A</answer>", 1.0),  # whitespace between the blocks
    ("<think></think><answer></answer>", 1.0),  # empty blocks still match
    ("<think>a\nb</think><answer>A\n</answer>", 1.0),  # DOTALL
    ("<think>r</think><answer>A</answer><answer>B</answer>", 1.0),  # .*? reaches the last tag
    (" <think>r</think><answer>A</answer>", 0.0),  # something before <think>
    ("<think>r</think><answer>A</answer> ", 0.0),  # something after </answer>
    ("<think>r</think>so<answer>A</answer>", 0.0),  # text between the blocks
    ("<answer>A</answer>", 0.0),
    ("<THINK>r</THINK><answer>A</answer>", 0.0),  # case-sensitive
    ("", 0.0),
]


@pytest.mark.parametrize(("text", "expected"), FORMAT_CASES)
def test_think_answer_format(text, expected):
    assert think_answer_format(text) == expected


def test_format_reward_batch():
    texts = [t for t, _ in FORMAT_CASES]
    assert get_reward("format")(texts) == [e for _, e in FORMAT_CASES]


# Points: think non-empty 0.3, >10 chars 0.1; rethink 0.2, >10 chars 0.1; answer a/b 0.2 or
# containing a/b 0.1; box in think 0.2, all coords < 505 0.1; else "[" and "]" in think 0.1.
MULTI_STAGE_CASES = [
    (
        "<think>Scratch near [120, 40, 180, 96].</think>"
        "<rethink>The mark is a real scratch.</rethink><answer>a</answer>",
        1.2,  # 0.3+0.1 + 0.2+0.1 + 0.2 + 0.2+0.1: the maximum
    ),
    ("", 0.0),
    ("<think>short</think>", 0.3),  # 5 characters: no length point
    ("<think>  looks fine overall </think><answer>b</answer>", 0.6),  # 0.4 + 0.2
    ("<think>defect at [500, 10, 600, 90]</think><answer>a</answer>", 0.8),  # 0.4+0.2+0.2, >=505
    ("<think>see region [top left]</think>", 0.5),  # 0.4 + bracket hint 0.1
    ("<think>box [-5, 2, 3, 4] here</think>", 0.5),  # negative: no box, bracket hint 0.1
    ("<think>nothing odd here</think><rethink>[1, 2, 3, 4]</rethink>", 0.7),  # 0.4 + 0.3
    ("<answer>Anomalous</answer>", 0.1),  # contains an "a"
    ("<answer>c</answer>", 0.0),
    ("a", 0.0),  # an answer needs the tag
    ("<think></think><think>long enough text [1, 2, 3, 4]</think>", 0.0),  # first block only
    ("<THINK>Scratch at [1, 2, 3, 4]</THINK><ANSWER>A</ANSWER>", 0.9),  # 0.4+0.2+0.3, any case
    ("<think>ok</think><rethink>   </rethink><answer> B </answer>", 0.5),  # 0.3 + 0 + 0.2
]


@pytest.mark.parametrize(("text", "expected"), MULTI_STAGE_CASES)
def test_multi_stage_format_score(text, expected):
    assert multi_stage_format_score(text) == pytest.approx(expected)


def test_multi_stage_format_reward_batch():
    texts = [t for t, _ in MULTI_STAGE_CASES]
    got = get_reward("multi_stage_format")(texts)
    assert got == pytest.approx([e for _, e in MULTI_STAGE_CASES])
