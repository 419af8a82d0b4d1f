"""AD-FM's localization reward: GIoU, Hungarian matching, count and focus terms, normalisation."""

from __future__ import annotations

import pytest

from training.rewards import RewardInputError, get_reward
from training.rewards.localization import (
    count_reward,
    focus_reward,
    giou,
    localization_score,
    matched_giou,
)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),  # identical
        # disjoint side by side: IoU 0, union 200, enclosing 30x10 = 300 -> -(300-200)/300
        ([0, 0, 10, 10], [20, 0, 30, 10], -1 / 3),
        # disjoint diagonal: union 2, enclosing 3x3 = 9 -> -(9-2)/9
        ([0, 0, 1, 1], [2, 2, 3, 3], -7 / 9),
        # nested: IoU 16/100, enclosing = the outer box, no penalty
        ([0, 0, 10, 10], [2, 2, 6, 6], 0.16),
        # overlap: IoU 1/7, enclosing 3x3 = 9, penalty (9-7)/9 -> 1/7 - 2/9 = -5/63
        ([0, 0, 2, 2], [1, 1, 3, 3], -5 / 63),
        # touching edges: IoU 0, union = enclosing -> 0
        ([0, 0, 1, 1], [1, 0, 2, 1], 0.0),
        # two zero-area points: union 0 -> IoU 0; enclosing 0 -> GIoU = IoU
        ([1, 1, 1, 1], [1, 1, 1, 1], 0.0),
        # inverted box has area 0: IoU 0; enclosing 10x10 = union -> 0
        ([10, 10, 0, 0], [0, 0, 10, 10], 0.0),
    ],
)
def test_giou(a, b, expected):
    assert giou(a, b) == pytest.approx(expected)
    assert giou(b, a) == pytest.approx(expected)  # symmetric


def test_giou_of_absurd_coordinates_stays_finite():
    assert -1.0 <= giou([0, 0, 1e200, 1e200], [10, 10, 20, 20]) <= 1.0


def test_hungarian_with_more_predicted_than_true_boxes():
    gt = [[0, 0, 10, 10], [100, 100, 110, 110]]
    # p2 overlaps g0 (IoU 100/120) but p0 matches g0 exactly: p2 stays unmatched at 0.
    pred = [[0, 0, 10, 10], [100, 100, 110, 110], [0, 0, 10, 12]]
    assert matched_giou(pred, gt) == pytest.approx([1.0, 1.0, 0.0])
    # order of predictions does not matter
    assert matched_giou(pred[::-1], gt) == pytest.approx([0.0, 1.0, 1.0])
    # mean over the 3 predictions 2/3, count |3-2| = 1 -> 0.5: r = 2/3 + 0.15
    text = "<think>" + " ".join(str(b) for b in pred) + "</think>"
    assert localization_score(text, gt, True, normalize=False) == pytest.approx(2 / 3 + 0.15)
    assert localization_score(text, gt, True) == pytest.approx((2 / 3 + 0.15 + 0.5) / 1.5)


def test_hungarian_with_fewer_predicted_boxes_matches_the_best():
    gt = [[0, 0, 10, 10], [20, 20, 30, 30]]
    assert matched_giou([[20, 20, 30, 30]], gt) == pytest.approx([1.0])
    assert matched_giou([], gt) == []
    assert matched_giou([[0, 0, 1, 1]], []) == [0.0]


@pytest.mark.parametrize(
    ("m", "n", "expected"),
    [(2, 2, 1.0), (0, 0, 1.0), (1, 2, 0.5), (3, 2, 0.5), (0, 2, -0.1), (4, 2, -0.1), (9, 1, -0.1)],
)
def test_count_reward_table(m, n, expected):  # AD-FM eq. (5)
    assert count_reward(m, n) == expected


@pytest.mark.parametrize(("m", "expected"), [(0, 0.0), (1, 0.5), (2, -0.1), (5, -0.1)])
def test_focus_reward_table(m, expected):  # AD-FM eq. (6)
    assert focus_reward(m) == expected


TWO = [[0, 0, 10, 10], [20, 20, 30, 30]]
FAR = "[100, 100, 110, 110]"


def think(*boxes: str) -> str:
    return f"<think>Suspicious: {' and '.join(boxes)}.</think><answer>a</answer>"


# Anomalous sample with the two boxes TWO. raw r = mean GIoU over predictions + 0.3 r_count;
# normalised = clip((r + 0.5) / 1.5, 0, 1).
ANOMALOUS_CASES = [
    (think("[0, 0, 10, 10]", "[20, 20, 30, 30]"), 1.3, 1.0),  # exact, count 1
    (think("[0, 0, 10, 10]"), 1.15, 1.0),  # one box fewer: 1 + 0.15 saturates
    (think("[0, 0, 10, 10]", "[20, 20, 30, 30]", FAR), 2 / 3 + 0.15, (2 / 3 + 0.65) / 1.5),
    (think("[0, 0, 10, 10]", "[20, 20, 30, 30]", FAR, FAR), 0.5 - 0.03, (0.97) / 1.5),
    ("<think>nothing to see</think><answer>a</answer>", 0.0, 0.0),  # anomalous, m = 0
    ("<think>[0, 0, 10, 10]</think> [20, 20, 30, 30]", 1.15, 1.0),  # outside think: ignored
    ("<think>none</think><think>[0, 0, 10, 10]</think>", 0.0, 0.0),  # first think block only
    ("<THINK>[0, 0, 10, 10]</THINK>", 1.15, 1.0),  # tags in any case
    ("<think>[-1, 0, 10, 10]</think>", 0.0, 0.0),  # negative numbers are no box
]


@pytest.mark.parametrize(("text", "raw", "normalised"), ANOMALOUS_CASES)
def test_localization_anomalous(text, raw, normalised):
    assert localization_score(text, TWO, True, normalize=False) == pytest.approx(raw)
    assert localization_score(text, TWO, True) == pytest.approx(normalised)


def test_localization_three_true_boxes_one_found():
    gt = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]
    # mean 1, |1 - 3| = 2 -> count -0.1: r = 0.97 -> 0.98
    assert localization_score(think("[0, 0, 10, 10]"), gt, True) == pytest.approx(0.98)


def test_localization_misplaced_boxes():
    gt = [[0, 0, 10, 10]]
    # GIoU -1/3, count 1: r = -1/3 + 0.3 = -0.0333 -> (0.4667)/1.5 = 0.3111
    side = think("[20, 0, 30, 10]")
    assert localization_score(side, gt, True) == pytest.approx((-1 / 3 + 0.8) / 1.5)
    # far away: GIoU = 200/1020100 - 1, r ~ -0.6998 -> clipped to 0
    far = think("[1000, 1000, 1010, 1010]")
    assert localization_score(far, gt, True, normalize=False) == pytest.approx(
        200 / 1_020_100 - 1 + 0.3
    )
    assert localization_score(far, gt, True) == 0.0


@pytest.mark.parametrize(
    ("boxes", "expected"),
    [([], 0.0), (["[1, 1, 5, 5]"], 0.5), (["[1, 1, 5, 5]", "[6, 6, 9, 9]"], -0.1)],
)
@pytest.mark.parametrize("normalize", [True, False])
def test_localization_normal_focus_is_not_normalised(boxes, expected, normalize):
    text = think(*boxes) if boxes else "<think>clean</think><answer>b</answer>"
    reward = get_reward("localization", normalize=normalize)
    assert reward([text], boxes=[[]], solution=["b"]) == [expected]


def test_localization_reward_columns():
    r = get_reward("localization")
    one = think("[0, 0, 10, 10]")
    got = r(
        [one] * 6,
        boxes=[[[0, 0, 10, 10]], [[0, 0, 10, 10]], [], [[0, 0, 10, 10]], [[0, 0, 10, 10]], None],
        solution=["a", "A", "a", "b", None, "a"],
    )
    # anomalous; "A" counts as anomalous; anomalous without boxes -> focus; label b -> focus;
    # no label -> anomalous because it has boxes; no boxes value -> not applicable
    assert got == [1.0, 1.0, 0.5, 0.5, 1.0, None]


def test_localization_without_solution_column_uses_the_boxes():
    r = get_reward("localization")
    assert r([think("[0, 0, 10, 10]")] * 2, boxes=[[[0, 0, 10, 10]], []]) == [1.0, 0.5]


def test_localization_alpha():
    r = get_reward("localization", alpha=0.0, normalize=False)
    assert r([think("[0, 0, 10, 10]")], boxes=[TWO], solution=["a"]) == pytest.approx([1.0])


@pytest.mark.parametrize("bad", [[[0, 0, 10]], [["x", 0, 1, 1]], [[0, 0, float("nan"), 1]], [5]])
def test_localization_rejects_malformed_ground_truth(bad):
    with pytest.raises(RewardInputError, match="ground-truth boxes"):
        get_reward("localization")([think("[0, 0, 1, 1]")], boxes=[bad], solution=["a"])


def test_localization_needs_the_boxes_column():
    with pytest.raises(RewardInputError, match="'boxes'"):
        get_reward("localization")(["x"], solution=["a"])
