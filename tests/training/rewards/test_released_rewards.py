"""The rewards that reproduce the authors' released code agree with it on its golden cases.

``golden/released_rewards.json`` holds inputs and outputs of AD-FM's ``AnomalyClsReward``,
AnomalyR1's ``choice_reward`` and EMIT's ``CLSAccuracyORM_choice``, run outside this repository
on fuzzed completions (source file and commit inside the file). Each case also records what our
generic ``choice_accuracy`` gives, so the cases where the recipes' old reward disagreed stay in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.rewards import get_reward

GOLDEN = json.loads((Path(__file__).parent / "golden" / "released_rewards.json").read_text())


def _ids(cases):
    return [repr(c["completion"])[:40] for c in cases]


@pytest.mark.parametrize("case", GOLDEN["adfm"]["cases"], ids=_ids(GOLDEN["adfm"]["cases"]))
def test_adfm_classification_equals_anomaly_cls_reward(case):
    reward = get_reward("adfm_classification")
    assert reward([case["completion"]], solution=[case["solution"]]) == [case["reward"]]


@pytest.mark.parametrize(
    "case", GOLDEN["anomalyr1"]["cases"], ids=_ids(GOLDEN["anomalyr1"]["cases"])
)
def test_anomalyr1_choice_equals_choice_reward(case):
    reward = get_reward("anomalyr1_choice")
    assert reward([case["completion"]], solution=[case["solution"]]) == [case["reward"]]


@pytest.mark.parametrize("case", GOLDEN["emit"]["cases"], ids=_ids(GOLDEN["emit"]["cases"]))
def test_emit_choice_accuracy_equals_cls_accuracy_orm_choice(case):
    reward = get_reward("choice_accuracy", invalid=-1.0, emit_rules=True)
    assert reward([case["completion"]], solution=[case["solution"]]) == [case["reward"]]


@pytest.mark.parametrize("name", ["adfm", "anomalyr1"])
def test_golden_cases_include_disagreements_with_choice_accuracy(name):
    # The point of the new rewards: on these cases the generic reward scored differently.
    cases = GOLDEN[name]["cases"]
    assert sum(c["reward"] != c["choice_accuracy"] for c in cases) >= 50


def test_emit_strips_before_removing_characters():
    # EMIT strips first: "A\t." keeps its tab once the dot is gone, so it is invalid.
    reward = get_reward("choice_accuracy", invalid=-1.0, emit_rules=True)
    assert reward(["<answer>A\t.</answer>"], solution=["A"]) == [-1.0]


@pytest.mark.parametrize(
    ("name", "text", "solution", "expected"),
    [
        ("adfm_classification", "<ANSWER>\n a \n</ANSWER>", "a", 1.0),  # any case, any line
        ("adfm_classification", "<answer>a.</answer>", "A", 0.8),  # partial credit
        ("adfm_classification", "<answer>anomalous!!</answer>", "a", 0.0),  # 11 characters
        ("adfm_classification", "<answer>anomalous</answer>", "a", 0.8),  # 9, contains "a"
        ("adfm_classification", "b", "x", 1.0),  # anything but "a" is normal
        ("anomalyr1_choice", "<think>x</think>\n<answer>B</answer>", "B", 1.0),
        ("anomalyr1_choice", "<answer>B</answer>", "B", 0.0),  # no think block
        ("anomalyr1_choice", "<think>x</think><answer>b</answer>", "B", 0.0),  # case kept
        ("anomalyr1_choice", "<think>x</think><answer>A</answer><answer>B</answer>", "B", 1.0),
    ],
)
def test_hand_computed_cases(name, text, solution, expected):
    assert get_reward(name)([text], solution=[solution]) == [expected]


@pytest.mark.parametrize("name", ["adfm_classification", "anomalyr1_choice"])
def test_rows_without_solution_are_not_scored(name):
    assert get_reward(name)(["<answer>a</answer>"], solution=[None]) == [None]
