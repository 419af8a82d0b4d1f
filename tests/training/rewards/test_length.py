"""EMIT's cosine length reward and ms-swift's n-gram repetition penalty."""

from __future__ import annotations

import pytest

from training.rewards import get_reward
from training.rewards.length import cosine_value, repetition_value

LENGTHS = (100, 256, 384, 512, 640, 768)


@pytest.mark.parametrize(
    ("text", "solution", "expected"),
    [
        # correct: 1.0 up to 256 tokens, cosine down to 0.5 at 512, then the period repeats
        ("<answer>A</answer>", "A", (1.0, 1.0, 0.75, 0.5, 0.75, 1.0)),
        # wrong: -0.5 up to 256 tokens, up to 0.0 at 512, back down past it
        ("<answer>B</answer>", "A", (-0.5, -0.5, -0.25, 0.0, -0.25, -0.5)),
        # invalid under EMIT's rule: -1 at every length
        ("<answer>(A)</answer>", "A", (-1.0,) * 6),
        ("<answer>\nA\n</answer>", "A", (-1.0,) * 6),
    ],
)
def test_cosine_length_constants(text, solution, expected):
    reward = get_reward("cosine_length")
    got = [reward([text], solution=[solution], completion_ids=[[7] * n])[0] for n in LENGTHS]
    assert got == pytest.approx(list(expected))


def test_cosine_length_invalid_value():
    reward = get_reward("cosine_length", invalid=-2.0)
    assert reward(["<answer>E</answer>"], solution=["A"], completion_ids=[[1]]) == [-2.0]


def test_cosine_length_counts_words_without_completion_ids():
    text = "<answer>A</answer>" + " w" * 383  # 384 whitespace tokens
    assert get_reward("cosine_length")([text], solution=["A"]) == pytest.approx([0.75])


def test_cosine_value_is_not_clipped():
    assert cosine_value(768, 1.0, 0.5, max_len=512, soft=256) == pytest.approx(1.0)
    assert cosine_value(1024, 1.0, 0.5, max_len=512, soft=256) == pytest.approx(0.5)


def test_cosine_length_row_without_solution():
    assert get_reward("cosine_length")(["<answer>A</answer>"], solution=[None]) == [None]


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("", 4, 0.0),
        ("a b c", 4, 0.0),  # fewer words than n
        ("a b c d", 4, 0.0),  # 1 4-gram, 1 unique
        ("a b c d a b c d", 4, -0.2),  # 5 4-grams, 4 unique
        ("x x x x x x", 4, -2 / 3),  # 3 4-grams, 1 unique
        # lower-cased: "the crack" x4 -> 5 4-grams alternating between 2
        ("The Crack the crack THE CRACK the crack", 4, -0.6),
        ("a b a b", 2, -1 / 3),  # (a b) (b a) (a b): 3 bigrams, 2 unique
        ("a\nb\tc  d a b c d", 4, -0.2),  # any whitespace separates words
    ],
)
def test_repetition(text, n, expected):
    assert repetition_value(text, ngram_size=n) == pytest.approx(expected)
    reward = get_reward("repetition", ngram_size=n)
    assert reward([text]) == pytest.approx([expected])


def test_repetition_max_penalty():
    assert get_reward("repetition", max_penalty=-2.0)(["x x x x x x"]) == pytest.approx([-4 / 3])


def test_repetition_without_repeats_is_plus_zero():
    assert str(repetition_value("a b c d e")) == "0.0"
