"""LR-IAD's focal reward alpha * (1 - p)^gamma * f, p from the group or from a log-probability."""

from __future__ import annotations

import math

import pytest

from training.rewards import RewardInputError, get_reward
from training.rewards.focal import focal_value, group_fractions

RIGHT, WRONG = "<think>..</think><answer>A</answer>", "<think>..</think><answer>B</answer>"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # group of 4 with 1 correct: p = 1/4
        ({"gamma": 0.0}, [1.0, 0.0, 0.0, 0.0]),  # (3/4)^0 = 1
        ({"gamma": 2.0}, [0.5625, 0.0, 0.0, 0.0]),  # (3/4)^2 = 9/16
        ({}, [0.5625, 0.0, 0.0, 0.0]),  # defaults alpha 1, gamma 2
        ({"alpha": 2.0, "gamma": 1.0}, [1.5, 0.0, 0.0, 0.0]),  # 2 * 3/4
    ],
)
def test_focal_group_of_four_with_one_correct(params, expected):
    reward = get_reward("focal", num_generations=4, **params)
    assert reward([RIGHT, WRONG, WRONG, WRONG], solution=["A"] * 4) == pytest.approx(expected)


def test_focal_groups_are_consecutive_blocks():
    reward = get_reward("focal", num_generations=4, gamma=2.0)
    texts = [RIGHT, WRONG, WRONG, WRONG] + [RIGHT] * 4
    # second group all correct: p = 1 -> (1 - 1)^2 = 0
    assert reward(texts, solution=["A"] * 8) == pytest.approx([0.5625] + [0.0] * 7)
    with_gamma_0 = get_reward("focal", num_generations=4, gamma=0.0)
    assert with_gamma_0(texts, solution=["A"] * 8) == pytest.approx([1.0, 0, 0, 0, 1, 1, 1, 1])


def test_focal_last_partial_block_is_its_own_group():
    reward = get_reward("focal", num_generations=4)
    texts = [RIGHT, WRONG, WRONG, WRONG, RIGHT, WRONG]
    # blocks [0:4] p = 1/4 and [4:6] p = 1/2 -> (1/2)^2 = 0.25
    assert reward(texts, solution=["A"] * 6) == pytest.approx([0.5625, 0, 0, 0, 0.25, 0])


def test_group_fractions():
    assert group_fractions([True, False, True], 2) == [0.5, 0.5, 1.0]
    assert group_fractions([], 4) == []


@pytest.mark.parametrize(
    ("logprob", "correct", "expected"),
    [
        (math.log(0.5), True, 0.25),  # p = 0.5
        (math.log(0.5), False, 0.0),
        (0.0, True, 0.0),  # p = 1
        (0.3, True, 0.0),  # a positive log-probability is clipped to p = 1
        (float("-inf"), True, 1.0),  # p = 0
        (None, True, None),
        (float("nan"), True, None),
    ],
)
def test_focal_from_logprob(logprob, correct, expected):
    reward = get_reward("focal", num_generations=4, p_source="logprob")
    got = reward([RIGHT if correct else WRONG], solution=["A"], answer_logprob=[logprob])
    assert got == ([None] if expected is None else pytest.approx([expected]))


def test_focal_logprob_needs_its_column():
    reward = get_reward("focal", num_generations=2, p_source="logprob")
    with pytest.raises(RewardInputError, match="answer_logprob"):
        reward([RIGHT], solution=["A"])


def test_focal_value_gamma_zero_at_p_one():
    assert focal_value(1.0, True, gamma=0.0) == 1.0  # 0^0 = 1
    assert focal_value(1.0, True) == 0.0


def test_focal_row_without_solution():
    reward = get_reward("focal", num_generations=2)
    assert reward([RIGHT, RIGHT], solution=["A", None]) == [0.25, None]
