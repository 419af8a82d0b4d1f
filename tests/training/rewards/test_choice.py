"""choice_accuracy (ours and EMIT's rules), invalid_penalty and AnomalyR1's ROAM."""

from __future__ import annotations

import pytest

from training.rewards import RewardInputError, get_reward
from training.rewards.choice import choice_score, roam_score

DEFAULT_CASES = [
    ("<think>..</think><answer>B</answer>", "B", 1.0),
    ("<answer>C</answer>", "B", 0.0),
    ("<answer>The answer is B.</answer>", "B", 1.0),
    ("<answer>\nB\n</answer>", "B", 1.0),  # our rule reads across lines
    ("<answer>(B)</answer>", "B", 1.0),
    ("<answer>A</answer><answer>B</answer>", "B", 1.0),  # the last block
    ("B", "B", 0.0),  # no answer block
    ("<answer>a</answer>", "a", 1.0),  # AD-FM's binary answers
    ("<answer>b</answer>", "a", 0.0),
    ("<answer>a scratch</answer>", "a", 0.0),  # an article, not an answer
    ("<answer>B</answer>", " b ", 1.0),  # the solution is stripped and upper-cased
]


@pytest.mark.parametrize(("text", "solution", "expected"), DEFAULT_CASES)
def test_choice_accuracy_default(text, solution, expected):
    assert get_reward("choice_accuracy")([text], solution=[solution]) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>B</answer>", 1.0),
        ("<answer>C</answer>", 0.0),
        ("<answer>E</answer>", -1.0),  # not in ABCD
        ("<answer>none</answer>", -1.0),
        ("no tags", -1.0),
    ],
)
def test_choice_accuracy_with_invalid_value(text, expected):
    reward = get_reward("choice_accuracy", invalid=-1.0)
    assert reward([text], solution=["B"]) == [expected]


EMIT_CASES = [
    ("<answer>B</answer>", "B", 1.0),
    ("<answer> b. </answer>", "B", 1.0),  # spaces and dots removed, lower-cased
    ("<answer>C</answer>", "B", 0.0),
    ("<answer>\nB\n</answer>", "B", -1.0),  # no DOTALL: the whole text is read, invalid
    ("<answer>(A)</answer>", "A", -1.0),  # "(a)" is not a valid option
    ("B", "B", 1.0),  # no block: the whole text "b"
    ("<answer>A</answer><answer>B</answer>", "B", 0.0),  # the first block
    ("<answer>B is right</answer>", "B", -1.0),  # "bisright"
    ("<answer>E</answer>", "E", -1.0),  # valid letters are a-d
    ("<answer>a</answer>", "a", 1.0),
    ("<Answer>B</Answer>", "B", -1.0),  # case-sensitive tags
]


@pytest.mark.parametrize(("text", "solution", "expected"), EMIT_CASES)
def test_choice_accuracy_emit_rules(text, solution, expected):
    reward = get_reward("choice_accuracy", invalid=-1.0, emit_rules=True)
    assert reward([text], solution=[solution]) == [expected]


def test_emit_rules_without_invalid_value_score_invalid_as_wrong():
    assert choice_score("<answer>(A)</answer>", "A", emit_rules=True) == 0.0


def test_choice_accuracy_row_without_solution_is_not_applicable():
    reward = get_reward("choice_accuracy")
    assert reward(["<answer>A</answer>"] * 2, solution=["A", None]) == [1.0, None]


def test_choice_accuracy_needs_the_solution_column():
    with pytest.raises(RewardInputError, match="'solution'"):
        get_reward("choice_accuracy")(["<answer>A</answer>"], prompts=["q"])


@pytest.mark.parametrize(
    ("text", "params", "expected"),
    [
        ("<answer>B</answer>", {}, 0.0),
        ("<answer>E</answer>", {}, -1.0),
        ("<answer>C</answer>", {"valid": "AB"}, -1.0),
        ("<answer>b</answer>", {"valid": "ab"}, 0.0),
        ("no answer", {}, -1.0),
        ("<answer>(A)</answer>", {"emit_rules": True}, -1.0),
        ("<answer>\nA</answer>", {"emit_rules": True}, -1.0),
        ("<answer>E</answer>", {"penalty": -0.5}, -0.5),
    ],
)
def test_invalid_penalty(text, params, expected):
    assert get_reward("invalid_penalty", **params)([text]) == [expected]


# t = choice in the last think block, a = in the last answer block, s = solution.
ROAM_CASES = [
    ("<answer>B</answer>", "B", 0.0),  # no think-then-answer structure
    ("<think>So B.</think> text <answer>B</answer>", "B", 0.0),  # text between the blocks
    ("<THINK>So B.</THINK><ANSWER>B</ANSWER>", "B", 0.0),  # case-sensitive tags
    ("<think>no letters here</think><answer>none</answer>", "B", 0.0),  # t, a None
    ("<think>looks scratched</think><answer>B</answer>", "B", 0.8),  # t None, a == s
    ("<think>looks scratched</think><answer>B</answer>", "A", 0.05),  # t None, a != s
    ("<think>The scratch means B.</think><answer>B</answer>", "B", 1.0),  # t == s == a
    ("<think>So A.</think><answer>A</answer>", "B", 0.1),  # consistent but wrong
    ("<think>So C.</think><answer>A</answer>", "B", 0.0),  # t != a, both wrong
    ("<think>So B.</think><answer>A</answer>", "B", 0.0),  # reasoning right, answer wrong
    ("<think>So A.</think><answer>B</answer>", "B", 0.0),  # reasoning wrong, answer right
    ("<think>So B.</think><answer>none</answer>", "B", 0.0),  # t == s, a None
    ("<think>pick B</think><answer>B.</answer>", "B", 1.0),  # short answer: punctuation dropped
    (
        "<think>So A.</think><answer>A</answer><think>So B.</think><answer>B</answer>",
        "B",
        1.0,  # the last blocks
    ),
]


@pytest.mark.parametrize(("text", "solution", "expected"), ROAM_CASES)
def test_roam(text, solution, expected):
    assert roam_score(text, solution) == expected
    assert get_reward("roam")([text], solution=[solution]) == [expected]
