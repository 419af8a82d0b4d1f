"""LR-IAD's focal reward: correct answers to hard prompts earn more (arXiv 2504.19524, eq. 4).

``R_focal = alpha * (1 - p)^gamma * f``. The paper calls ``p`` "the predicted probability of the
correct answer" and ``f`` a factor "to amplify the reward for critical anomaly regions"; the
authors' code is not public, so how both are obtained is our choice, documented here:

- ``p`` (``p_source="group"``, default): the fraction of correct completions in the prompt's
  group. TRL hands a reward function each prompt's ``G = num_generations`` completions as
  consecutive rows, so the batch is cut into consecutive blocks of ``G``; a last, shorter block
  (a batch that is not a multiple of ``G``) is its own group. Groups must not straddle the
  per-process batch: keep the per-device generation batch a multiple of ``G`` (TRL's
  ``RepeatSampler`` then keeps groups whole).
- ``p`` (``p_source="logprob"``): ``exp`` of the column ``answer_logprob``, the
  log-probability the policy gave the correct answer token (clipped to ``[0, 1]``; a row with
  ``None`` or NaN gets ``None``).
- ``f``: 1 when this completion's answer is correct, else 0 (so wrong answers earn 0 and the
  focal term only rewards right answers, more so where the group mostly failed). Correctness
  is :func:`~training.rewards.choice.choice_score`'s default rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from training.rewards.base import (
    Reward,
    check_choice,
    check_float,
    check_int,
    column,
    texts,
)
from training.rewards.choice import choice_score

P_SOURCES = ("group", "logprob")


def focal_value(p: float, correct: bool, *, alpha: float = 1.0, gamma: float = 2.0) -> float:
    """LR-IAD's eq. (4) ``alpha * (1 - p)^gamma * f`` with ``f = 1`` if ``correct`` else 0.

    Args:
        p: the probability of the correct answer, in ``[0, 1]``.
        correct: whether this completion answered correctly.
        alpha: the scale.
        gamma: the focusing exponent (0 gives plain ``alpha`` accuracy).

    Returns:
        The reward (``(1 - p)^0`` is 1, also at ``p = 1``).

    Example:
        >>> focal_value(0.25, True), focal_value(0.25, True, gamma=0.0), focal_value(0.25, False)
        (0.5625, 1.0, 0.0)
    """
    return alpha * (1.0 - p) ** gamma if correct else 0.0


def group_fractions(correct: Sequence[bool], group_size: int) -> list[float]:
    """Per row, the fraction of correct rows in its block of ``group_size`` consecutive rows.

    Example:
        >>> group_fractions([True, False, False, False, True, True], 4)
        [0.25, 0.25, 0.25, 0.25, 1.0, 1.0]
    """
    out: list[float] = []
    for start in range(0, len(correct), group_size):
        block = correct[start : start + group_size]
        out.extend([sum(block) / len(block)] * len(block))
    return out


@dataclass(frozen=True)
class Focal(Reward):
    """``focal``: :func:`focal_value` per completion (LR-IAD); see the module docstring for p and f.

    A row whose ``solution`` is ``None`` gets ``None`` and counts as wrong in its group.

    Args:
        num_generations: required; the run's ``GRPOConfig.num_generations`` (group size).
        alpha: the scale of eq. (4).
        gamma: the focusing exponent of eq. (4).
        p_source: ``"group"`` (fraction correct in the group) or ``"logprob"`` (the
            ``answer_logprob`` column).

    Example:
        >>> r = Focal(num_generations=4)
        >>> r(["<answer>A</answer>"] + ["<answer>B</answer>"] * 3, solution=["A"] * 4)
        [0.5625, 0.0, 0.0, 0.0]
    """

    name = "focal"
    num_generations: int
    alpha: float = 1.0
    gamma: float = 2.0
    p_source: str = "group"

    def __post_init__(self) -> None:
        self._set(
            num_generations=check_int(self.name, "num_generations", self.num_generations, low=1),
            alpha=check_float(self.name, "alpha", self.alpha),
            gamma=check_float(self.name, "gamma", self.gamma, low=0.0),
            p_source=check_choice(self.name, "p_source", self.p_source, P_SOURCES),
        )

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        n = len(completions)
        solutions = column(columns, "solution", n, self.name)
        correct = [
            sol is not None and choice_score(text, str(sol)) == 1.0
            for text, sol in zip(texts(completions), solutions, strict=True)
        ]
        if self.p_source == "group":
            ps: list[float | None] = list(group_fractions(correct, self.num_generations))
        else:
            ps = [_probability(v) for v in column(columns, "answer_logprob", n, self.name)]
        return [
            None
            if sol is None or p is None
            else focal_value(p, ok, alpha=self.alpha, gamma=self.gamma)
            for sol, p, ok in zip(solutions, ps, correct, strict=True)
        ]


def _probability(logprob: Any) -> float | None:
    """``exp(logprob)`` clipped to ``[0, 1]``; ``None`` for a missing or NaN value."""
    if logprob is None:
        return None
    try:
        value = float(logprob)
    except (TypeError, ValueError):
        return None
    if math.isnan(value):
        return None
    return 1.0 if value >= 0 else math.exp(value)
