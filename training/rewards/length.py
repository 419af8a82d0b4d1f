"""Length and repetition rewards as EMIT trains with them (``Stage2.sh``, ms-swift ORMs).

``cosine_length`` is EMIT's ``CosineReward`` (``plugin.py``, after Yeo et al. 2025): short
correct answers earn most, wrong answers earn more the longer they reason, invalid answers
are penalised. ``repetition`` is ms-swift's ``RepetitionPenalty`` with EMIT's 4-grams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iad_pipeline.answers import emit_choice, emit_normalise
from training.rewards.base import (
    Reward,
    RewardParamError,
    check_float,
    check_int,
    check_letters,
    column,
    optional_column,
    texts,
)


def cosine_value(n_tokens: int, short: float, long: float, *, max_len: int, soft: int) -> float:
    """EMIT's cosine schedule: ``short`` up to ``soft`` tokens, ``long`` at ``max_len`` tokens.

    ``t = max(0, n - soft)``, ``T = max_len - soft``,
    ``r = short - (short - long) * (1 - cos(pi * t / T)) / 2``. The length is *not* clipped, so
    the schedule repeats with period ``2T`` past ``max_len`` (768 tokens score like 256 for
    EMIT's 512 / 256); in training ``max_completion_length = max_len`` keeps ``n <= max_len``.

    Example:
        >>> [cosine_value(n, 1.0, 0.5, max_len=512, soft=256) for n in (100, 256, 384, 512, 768)]
        [1.0, 1.0, 0.75, 0.5, 1.0]
    """
    t = max(0, n_tokens - soft)
    period = max_len - soft
    return short - (short - long) * (1 - math.cos(t * math.pi / period)) / 2


def repetition_value(text: str, *, ngram_size: int = 4, max_penalty: float = -1.0) -> float:
    """ms-swift's repetition penalty: ``(1 - unique n-grams / all n-grams) * max_penalty``.

    n-grams of lower-cased whitespace-separated words; 0.0 for an empty text or one with
    fewer than ``ngram_size`` words.

    Example:
        >>> round(repetition_value("a b c d a b c d"), 6)  # 5 4-grams, 4 unique
        -0.2
        >>> repetition_value("one two three")
        0.0
    """
    words = text.lower().split()
    if not words or len(words) < ngram_size:
        return 0.0
    grams = list(zip(*(words[i:] for i in range(ngram_size)), strict=False))
    return (1 - len(set(grams)) / len(grams)) * max_penalty + 0.0  # + 0.0 turns -0.0 into 0.0


@dataclass(frozen=True)
class CosineLength(Reward):
    """``cosine_length``: EMIT's length-aware accuracy reward.

    The answer is read by EMIT's rule (:func:`~iad_pipeline.answers.emit_choice`): outside
    ``valid`` it scores ``invalid`` (-1); correct, :func:`cosine_value` from
    ``min_len_value_correct`` (1.0) down to ``max_len_value_correct`` (0.5); wrong, from
    ``min_len_value_wrong`` (-0.5) up to ``max_len_value_wrong`` (0.0); ``max_len`` 512 and
    ``soft_cache_length`` 256 as in EMIT's ``Stage2.sh``.

    The length is ``len(completion_ids[i])`` (TRL's column, which includes the EOS token;
    EMIT counts ``tokenizer.encode`` of the decoded text, one token fewer). Without that column
    the whitespace-separated words are counted, a rough stand-in for tokens (unit tests, text
    datasets). A row whose ``solution`` is ``None`` gets ``None``. EMIT's paper gives no
    equation for it; it cites Yeo et al. (2025) and describes the three cases in words.

    Args:
        min_len_value_correct: a correct answer's reward up to ``soft_cache_length`` tokens.
        max_len_value_correct: a correct answer's reward at ``max_len`` tokens.
        min_len_value_wrong: a wrong answer's reward up to ``soft_cache_length`` tokens.
        max_len_value_wrong: a wrong answer's reward at ``max_len`` tokens.
        max_len: EMIT's ``cosine_max_len``.
        soft_cache_length: tokens before the schedule starts.
        invalid: the reward of an answer outside ``valid``.
        valid: the valid option letters.

    Example:
        >>> r = CosineLength()
        >>> r(["<answer>A</answer>"] * 3, solution=["A", "B", "B"],
        ...   completion_ids=[[0] * 384, [0] * 384, [0] * 384])
        [0.75, -0.25, -0.25]
    """

    name = "cosine_length"
    min_len_value_correct: float = 1.0
    max_len_value_correct: float = 0.5
    min_len_value_wrong: float = -0.5
    max_len_value_wrong: float = 0.0
    max_len: int = 512
    soft_cache_length: int = 256
    invalid: float = -1.0
    valid: str = "ABCD"

    def __post_init__(self) -> None:
        values = {
            key: check_float(self.name, key, getattr(self, key))
            for key in (
                "min_len_value_correct",
                "max_len_value_correct",
                "min_len_value_wrong",
                "max_len_value_wrong",
                "invalid",
            )
        }
        soft = check_int(self.name, "soft_cache_length", self.soft_cache_length, low=0)
        max_len = check_int(self.name, "max_len", self.max_len, low=1)
        if max_len <= soft:
            msg = (
                f"reward {self.name!r}: max_len={max_len} <= soft_cache_length={soft}; expected "
                "max_len > soft_cache_length (EMIT: 512 and 256)"
            )
            raise RewardParamError(msg)
        self._set(
            **values,
            max_len=max_len,
            soft_cache_length=soft,
            valid=check_letters(self.name, "valid", self.valid),
        )

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        n = len(completions)
        solutions = column(columns, "solution", n, self.name)
        ids = optional_column(columns, "completion_ids", n, self.name)
        allowed = set(self.valid.lower())
        out: list[float | None] = []
        for text, sol, row_ids in zip(texts(completions), solutions, ids, strict=True):
            if sol is None:
                out.append(None)
                continue
            prediction = emit_choice(text)
            if prediction not in allowed:
                out.append(self.invalid)
                continue
            if prediction == emit_normalise(str(sol)):
                short, long = self.min_len_value_correct, self.max_len_value_correct
            else:
                short, long = self.min_len_value_wrong, self.max_len_value_wrong
            n_tokens = len(row_ids) if row_ids is not None else len(text.split())
            out.append(
                cosine_value(
                    n_tokens, short, long, max_len=self.max_len, soft=self.soft_cache_length
                )
            )
        return out


@dataclass(frozen=True)
class Repetition(Reward):
    """``repetition``: :func:`repetition_value` per completion (EMIT: 4-grams, penalty -1).

    The whole completion is read, tags included. EMIT's paper describes it in words only.

    Args:
        ngram_size: the n of the n-grams (EMIT's ``--repetition_n_grams 4``).
        max_penalty: the reward when every n-gram repeats (ms-swift's default -1.0).

    Example:
        >>> [round(r, 6) for r in Repetition()(["the crack is here the crack is here", "ok"])]
        [-0.2, 0.0]
    """

    name = "repetition"
    ngram_size: int = 4
    max_penalty: float = -1.0

    def __post_init__(self) -> None:
        self._set(
            ngram_size=check_int(self.name, "ngram_size", self.ngram_size, low=1),
            max_penalty=check_float(self.name, "max_penalty", self.max_penalty),
        )

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        return [
            repetition_value(t, ngram_size=self.ngram_size, max_penalty=self.max_penalty)
            for t in texts(completions)
        ]
