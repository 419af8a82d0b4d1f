"""The answer parser reads each protocol's letters, tags and boxes as its authors' code does."""

from __future__ import annotations

import itertools
import re

import pytest

from iad_pipeline.answers import (
    anomalyr1_choice,
    answer_letter,
    answer_text,
    boxes_from_text,
    completion_text,
    emit_choice,
    emit_normalise,
    first_tag,
    last_tag,
    mmad_letter,
    tag_blocks,
    think_letter,
)

MSG = [{"role": "assistant", "content": "<answer>B</answer>"}]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("plain", "plain"),
        (MSG, "<answer>B</answer>"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}], "x"),
        (
            [
                {"role": "assistant", "content": "first"},
                {"role": "tool", "content": "t"},
                {"role": "assistant", "content": "last"},
            ],
            "last",  # the last assistant message
        ),
        ({"role": "assistant", "content": "one message"}, "one message"),
        (
            [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"}]}],
            "a",
        ),
        ([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}], "ab"),
        ([{"content": "no role"}], "no role"),
        ([], ""),
        (None, ""),
        (42, ""),
        (b"bytes", ""),
        ([{"role": "assistant", "content": None}], ""),
    ],
)
def test_completion_text(completion, expected):
    assert completion_text(completion) == expected


@pytest.mark.parametrize(
    ("text", "tag", "kwargs", "expected"),
    [
        ("<think>a</think> <think>b</think>", "think", {}, ["a", "b"]),
        ("<THINK>a</Think>", "think", {}, ["a"]),
        ("<THINK>a</THINK>", "think", {"ignore_case": False}, []),
        ("<think>a\nb</think>", "think", {}, ["a\nb"]),
        ("<think>a\nb</think>", "think", {"dotall": False}, []),
        ("< answer >A</ answer >", "answer", {}, []),
        ("< answer >A</ answer >", "answer", {"loose": True}, ["A"]),
        ("<think>unclosed", "think", {}, []),
        ("<think><think>x</think>", "think", {}, ["<think>x"]),  # non-greedy from the first
        (None, "think", {}, []),
    ],
)
def test_tag_blocks(text, tag, kwargs, expected):
    assert tag_blocks(text, tag, **kwargs) == expected


def test_first_and_last_tag():
    text = "<answer>A</answer><answer> B </answer>"
    assert (first_tag(text, "answer"), last_tag(text, "answer")) == ("A", " B ")
    assert first_tag("none", "answer") is None
    assert last_tag(None, "answer") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer> C </answer>", "C"),
        ("<answer>A</answer><ANSWER>\nB\n</ANSWER>", "B"),  # last block, any case, multiline
        ("<answer></answer>", ""),
        ("no tag", None),
        (None, None),
    ],
)
def test_answer_text(text, expected):
    assert answer_text(text) == expected


OPTIONS = {"A": "Yes.", "B": "No."}


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("A", None, "A"),
        ("B. No. I first thought A", None, "A"),  # MMAD keeps the last standalone letter
        ("Answer: E", None, "E"),
        ("AB", None, None),  # not standalone
        ("a", None, None),  # upper case only
        ("No.", OPTIONS, "B"),  # difflib fallback to the closest option text
        ("yes", OPTIONS, "A"),
        ("yes", ["Yes.", "No."], "A"),  # options as a list are lettered A, B, ...
        ("", None, None),
        (None, OPTIONS, None),
        ("nothing", 5, None),  # options of an unusable type are ignored
    ],
)
def test_mmad_letter(text, options, expected):
    assert mmad_letter(text, options) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>maybe A</think><answer>B or C</answer>", "B"),  # first in the answer block
        ("<answer>A</answer><answer>D</answer>", "D"),  # last block
        ("<answer>\nC\n</answer>", "C"),  # DOTALL
        ("< answer >C</ answer >", "C"),  # whitespace inside the tags
        ("A guess. <ANSWER>B</ANSWER>", "A"),  # tags are case-sensitive: whole text read
        ("The defect is at the top, so B", "B"),  # no block: the whole text
        ("<answer>b</answer>", None),
        ("", None),
    ],
)
def test_think_letter(text, expected):
    assert think_letter(text) == expected


def test_think_letter_uses_options_when_no_letter():
    assert think_letter("<answer>no defect</answer>", {"A": "Yes.", "B": "No."}) == "B"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>B</answer>", "B"),
        ("<answer>The answer is C.</answer>", "C"),
        ("<answer>a</answer>", "A"),  # AD-FM's lower-case answers
        ("<answer> b. </answer>", "B"),
        ("<answer>a scratch</answer>", None),  # the article "a" is not an answer
        ("<answer>(B)</answer>", "B"),
        ("B", None),  # no answer block
        ("<answer></answer>", None),
    ],
)
def test_answer_letter(text, expected):
    assert answer_letter(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>A</answer>", "a"),
        ("<answer> B. </answer>", "b"),
        ("<answer>c_</answer>", "c"),
        ("<answer>(A)</answer>", "(a)"),
        ("<answer>A</answer><answer>B</answer>", "a"),  # first block
        ("<answer>\nA</answer>", "<answer>a</answer>"),  # no DOTALL: the whole text is read
        ("<Answer>A</Answer>", "<answer>a</answer>"),  # case-sensitive tags
        ("D", "d"),
        (None, ""),
    ],
)
def test_emit_choice(text, expected):
    assert emit_choice(text) == expected


def test_emit_normalise():
    assert emit_normalise(" A._\n") == "a"
    assert emit_normalise(None) == ""


# AnomalyR1's extract_choice, each case scored by hand (L = length after collapsing spaces).
R1_CASES = [
    ("", None),
    ("B", "B"),
    ("b.", "b"),  # short text: punctuation dropped, first character as is
    ("..", None),  # short text of punctuation only
    ("  A  ", "A"),  # collapsed to " A " (3 chars), one candidate
    ("no options", None),
    ("It is C", "C"),  # one candidate
    ("ABCD", "D"),  # four candidates; D alone lies beyond 70 % (pos 3 > 2.8): D=2
    # A at 7 (0), B at 44 (> 32.2: +2, '.' follows: +1) -> B
    ("Option A looks plausible, but the answer is B.", "B"),
    # Two A (one inside ANSWER, last at 34 > 32.2: +2; ANSWER keyword +1) -> 2*3 = 6 beats B's 4
    ("Option A looks plausible, but the ANSWER is B.", "A"),
    # Ties go to the letter seen first: A at 0 and B at 2, both 0 points in 20 chars
    ("A B" + " x" * 20, "A"),
    # Whitespace runs collapse before positions are measured
    ("A\n\n\nis wrong; I CHOOSE B", "B"),
    ("答案是B。", "B"),  # single candidate
]


@pytest.mark.parametrize(("text", "expected"), R1_CASES)
def test_anomalyr1_choice(text, expected):
    assert anomalyr1_choice(text) == expected


def test_anomalyr1_choice_of_non_text():
    assert anomalyr1_choice(None) is None
    assert anomalyr1_choice(["A"]) is None


@pytest.mark.parametrize(
    ("text", "strict", "expected"),
    [
        ("[1, 2, 3, 4]", True, [[1.0, 2.0, 3.0, 4.0]]),
        ("[ 1.5 ,2,3 , 4 ] [5,6,7,8]", True, [[1.5, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]),
        ("[-62, 231, 61, 382]", False, []),  # negative numbers are no box
        ("[1, 2, 3]", False, []),
        ("[1, 2, 3, 4, 5]", False, []),
        ("[[1, 2, 3, 4]]", True, [[1.0, 2.0, 3.0, 4.0]]),
        ('{"bbox_2d": [10, 20, 30, 40], "label": "scratch"}', True, [[10.0, 20.0, 30.0, 40.0]]),
        ("{'Position': [10, 20, 30, 40], 'Confidence': 0.9}", True, [[10.0, 20.0, 30.0, 40.0]]),
        ('{"bbox_2d": [1e1, 2, .5, 4]}', True, []),  # AD-FM's pattern misses these numbers
        ('{"bbox_2d": [1e1, 2, .5, 4]}', False, [[10.0, 2.0, 0.5, 4.0]]),  # the JSON scan reads
        ('{"box": ["1", "2", "3", "4"]}', False, [[1.0, 2.0, 3.0, 4.0]]),
        ('{"bbox": [-1e1, 2, 3, 4]}', False, []),  # still non-negative only
        # order of appearance across both scans, and no double counting
        ('{"bbox": [1e0, 0, 1, 1]} [2, 2, 3, 3]', False, [[1.0, 0.0, 1.0, 1.0], [2, 2, 3, 3]]),
        ("[" + "9" * 400 + ", 1, 2, 3]", False, []),  # overflows to inf: dropped
        ("", False, []),
        (None, False, []),
    ],
)
def test_boxes_from_text(text, strict, expected):
    assert boxes_from_text(text, strict=strict) == expected


TAG_ATOMS = [
    "<answer>",
    "</answer>",
    "<ANSWER>",
    "< answer >",
    "</ answer>",
    "<\nanswer>",
    "\n",
    "x",
]


@pytest.mark.parametrize("dotall", [True, False])
@pytest.mark.parametrize("ignore_case", [True, False])
@pytest.mark.parametrize("loose", [True, False])
def test_tag_blocks_equals_the_regex(dotall, ignore_case, loose):
    """The linear scan gives exactly re.findall's blocks, for every flag combination."""
    pattern = r"<\s*answer\s*>(.*?)<\s*/\s*answer\s*>" if loose else "<answer>(.*?)</answer>"
    flags = (re.DOTALL if dotall else 0) | (re.IGNORECASE if ignore_case else 0)
    for parts in itertools.product(TAG_ATOMS, repeat=4):
        text = "".join(parts)
        expected = re.findall(pattern, text, flags)
        got = tag_blocks(text, "answer", dotall=dotall, ignore_case=ignore_case, loose=loose)
        assert got == expected, text


def test_tag_blocks_is_linear_on_looping_output():
    text = "<think>" * 50_000 + "</answer>" * 50_000
    assert tag_blocks(text, "think") == []
    assert tag_blocks(text + "</think>", "think") == ["<think>" * 49_999 + "</answer>" * 50_000]
