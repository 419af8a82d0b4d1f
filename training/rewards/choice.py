"""Multiple-choice rewards: accuracy (ours, AD-FM's, AnomalyR1's), invalid penalty, ROAM."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iad_pipeline.answers import (
    anomalyr1_choice,
    answer_letter,
    emit_choice,
    emit_normalise,
    last_tag,
)
from training.rewards.base import (
    Reward,
    check_bool,
    check_float,
    check_letters,
    column,
    texts,
)

# AnomalyR1 (grpo_rec.py, roam_reward): the completion must hold a think block followed by an
# answer block, else ROAM is 0 (see _think_then_answer).
_JUNCTION = re.compile(r"</think>\s*<answer>")


def _think_then_answer(text: str) -> bool:
    """Whether ``re.search(r'<think>(.*?)</think>\\s*<answer>(.*?)</answer>', text, re.DOTALL)``
    matches, decided in linear time (the regex is quadratic on looping output).

    The earliest ``<think>`` leaves the most room, the first junction after it ends earliest,
    and then any ``</answer>`` after the junction completes the match.
    """
    opening = text.find("<think>")
    if opening < 0:
        return False
    junction = _JUNCTION.search(text, opening + len("<think>"))
    return junction is not None and text.find("</answer>", junction.end()) >= 0


def choice_score(
    text: str,
    solution: str,
    *,
    invalid: float | None = None,
    emit_rules: bool = False,
    valid: str = "ABCD",
) -> float:
    """Accuracy of one multiple-choice answer: ``r_cls = 1(l(y) = l(x))`` (AD-FM eq. 7).

    Our rule (default): :func:`~iad_pipeline.answers.answer_letter` of the completion equals the
    solution (``"B"``; AD-FM's ``"a"``/``"b"`` compare upper-cased) -> 1.0, else 0.0; with
    ``invalid`` set, an answer that is no letter of ``valid`` scores ``invalid`` instead.

    EMIT's rule (``emit_rules=True``, ``CLSAccuracyORM_choice``): the normalised
    :func:`~iad_pipeline.answers.emit_choice` equals the normalised solution -> 1.0, else 0.0;
    a prediction outside ``valid`` lower-cased (``{a, b, c, d}``) scores ``invalid``. EMIT runs
    with ``invalid=-1.0``; ``(A)`` and an answer with a newline inside its tags are invalid.

    Args:
        text: the completion text.
        solution: the correct letter.
        invalid: the score of an invalid answer; ``None`` scores it like a wrong one (0.0).
        emit_rules: read the answer as EMIT's training reward does.
        valid: the option letters that count as valid answers.

    Returns:
        1.0, 0.0 or ``invalid``.

    Example:
        >>> choice_score("<think>..</think><answer>B</answer>", "B")
        1.0
        >>> choice_score("<answer>\\nB\\n</answer>", "B", invalid=-1.0, emit_rules=True)
        -1.0
        >>> choice_score("<answer>a</answer>", "a")
        1.0
    """
    if emit_rules:
        prediction = emit_choice(text)
        score = 1.0 if prediction == emit_normalise(solution) else 0.0
        if invalid is not None and prediction not in set(valid.lower()):
            score = invalid
        return score
    letter = answer_letter(text)
    score = 1.0 if letter is not None and letter == solution.strip().upper() else 0.0
    if invalid is not None and (letter is None or letter not in valid):
        score = invalid
    return score


def roam_score(text: str, solution: str) -> float:
    """AnomalyR1's Reasoned Outcome Alignment Metric for one completion.

    The paper's eq. (7) ``R = Phi(R_mu, R_gamma) + Psi(O_nu, A_gamma, R_mu)`` with the values of
    its section 4.3 and of ``roam_reward`` in ``grpo_rec.py``. Without
    ``<think>(.*?)</think>\\s*<answer>(.*?)</answer>`` (case-sensitive) the score is 0. Else
    ``t`` = :func:`~iad_pipeline.answers.anomalyr1_choice` of the last think block, ``a`` = that
    of the last answer block (both stripped), ``s`` = the solution:

    ==========================================  =====
    case                                        score
    ==========================================  =====
    t and a both None                           0.0
    t None, a == s (answer alone, right)        0.8
    t None, a != s (answer alone, wrong)        0.05
    t == s and a == s                           1.0
    t != s, a != s, t == a (consistent, wrong)  0.1
    anything else (reasoning and answer clash)  0.0
    ==========================================  =====

    Example:
        >>> roam_score("<think>The scratch means B.</think><answer>B</answer>", "B")
        1.0
        >>> roam_score("<think>no letters here</think><answer>B</answer>", "B")
        0.8
        >>> roam_score("<answer>B</answer>", "B")
        0.0
    """
    if not _think_then_answer(text):
        return 0.0
    think = last_tag(text, "think", ignore_case=False) or ""
    answer = last_tag(text, "answer", ignore_case=False) or ""
    t, a, s = anomalyr1_choice(think.strip()), anomalyr1_choice(answer.strip()), solution
    if t is None and a is None:
        return 0.0
    if t is None:
        return 0.8 if a == s else 0.05
    if t == s and a == s:
        return 1.0
    if t != s and a != s and t == a:
        return 0.1
    return 0.0


@dataclass(frozen=True)
class ChoiceAccuracy(Reward):
    """``choice_accuracy``: :func:`choice_score` per completion against the ``solution`` column.

    A row whose solution is ``None`` gets ``None`` (not applicable). EMIT's variant:
    ``get_reward("choice_accuracy", invalid=-1.0, emit_rules=True)``.

    Args:
        invalid: the score of an answer that is no letter of ``valid`` (``None``: 0.0).
        emit_rules: read answers by EMIT's training rule instead of ours.
        valid: the valid option letters.

    Example:
        >>> ChoiceAccuracy()(["<answer>A</answer>", "<answer>C</answer>"], solution=["A", "B"])
        [1.0, 0.0]
    """

    name = "choice_accuracy"
    invalid: float | None = None
    emit_rules: bool = False
    valid: str = "ABCD"

    def __post_init__(self) -> None:
        invalid = None if self.invalid is None else check_float(self.name, "invalid", self.invalid)
        self._set(
            invalid=invalid,
            emit_rules=check_bool(self.name, "emit_rules", self.emit_rules),
            valid=check_letters(self.name, "valid", self.valid),
        )

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        solutions = column(columns, "solution", len(completions), self.name)
        return [
            None
            if sol is None
            else choice_score(
                text, str(sol), invalid=self.invalid, emit_rules=self.emit_rules, valid=self.valid
            )
            for text, sol in zip(texts(completions), solutions, strict=True)
        ]


@dataclass(frozen=True)
class InvalidPenalty(Reward):
    """``invalid_penalty``: ``penalty`` when the answer is no letter of ``valid``, else 0.0.

    The answer is read by :func:`~iad_pipeline.answers.answer_letter` (or EMIT's reading with
    ``emit_rules=True``); the solution is not needed. EMIT's paper sets the classification
    reward of an invalid answer to -1; this term gives that penalty on its own.

    Args:
        penalty: the reward of an invalid answer.
        valid: the valid option letters.
        emit_rules: read answers by EMIT's training rule instead of ours.

    Example:
        >>> InvalidPenalty()(["<answer>B</answer>", "<answer>E</answer>", "no answer"])
        [0.0, -1.0, -1.0]
    """

    name = "invalid_penalty"
    penalty: float = -1.0
    valid: str = "ABCD"
    emit_rules: bool = False

    def __post_init__(self) -> None:
        self._set(
            penalty=check_float(self.name, "penalty", self.penalty),
            valid=check_letters(self.name, "valid", self.valid),
            emit_rules=check_bool(self.name, "emit_rules", self.emit_rules),
        )

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        if self.emit_rules:
            allowed = set(self.valid.lower())
            ok = [emit_choice(t) in allowed for t in texts(completions)]
        else:
            ok = [answer_letter(t) in set(self.valid) for t in texts(completions)]
        return [0.0 if good else self.penalty for good in ok]


@dataclass(frozen=True)
class Roam(Reward):
    """``roam``: :func:`roam_score` per completion against the ``solution`` column (AnomalyR1).

    No parameters: the scores are those of the paper's section 4.3.

    Example:
        >>> Roam()(["<think>So A.</think><answer>A</answer>"], solution=["B"])
        [0.1]
    """

    name = "roam"

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        solutions = column(columns, "solution", len(completions), self.name)
        return [
            None if sol is None else roam_score(text, str(sol))
            for text, sol in zip(texts(completions), solutions, strict=True)
        ]


# AD-FM (hanawall/AD-FM cd5416b, scripts/grpo/plugin_adfm.py, AnomalyClsReward): the answer
# block is found case-insensitively and may span lines.
_ADFM_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
ADFM_PARTIAL_MAX_LEN = 10


def adfm_classification_score(text: str, solution: Any) -> float:
    """AD-FM's ``AnomalyClsReward`` for one completion (``plugin_adfm.py``, AD-FM ``cd5416b``).

    The ground truth is ``"a"`` (anomalous) when ``str(solution)`` stripped and lower-cased is
    ``"a"``, else ``"b"``. The prediction is the first ``<answer>`` block (any case, across
    lines), or the whole completion without one, stripped and lower-cased:

    ========================================================  =====
    prediction                                                score
    ========================================================  =====
    exactly ``"a"`` or ``"b"`` and equal to the ground truth  1.0
    the ground-truth letter inside a prediction of <= 10 chars 0.8
    anything else                                             0.0
    ========================================================  =====

    The 0.8 case is AD-FM's partial credit: ``"a."``, ``"(a)"``, ``"ab"`` and the whole text
    ``"bad"`` all score it when the truth is ``a`` (a substring test, not a word test).

    Example:
        >>> adfm_classification_score("<think>x</think><answer>A</answer>", "a")
        1.0
        >>> adfm_classification_score("<answer>(a)</answer>", "a")
        0.8
        >>> adfm_classification_score("<answer>b</answer>", "A")
        0.0
        >>> adfm_classification_score("a", "b")  # no tag: the whole text is the answer
        0.0
    """
    truth = "a" if str(solution).strip().lower() == "a" else "b"
    match = _ADFM_ANSWER.search(text)
    prediction = (match.group(1) if match else text).strip().lower()
    if prediction in ("a", "b") and prediction == truth:
        return 1.0
    if truth in prediction and len(prediction) <= ADFM_PARTIAL_MAX_LEN:
        return 0.8
    return 0.0


def anomalyr1_choice_score(text: str, solution: Any) -> float:
    """AnomalyR1's ``choice_reward`` for one completion (``grpo_rec.py``, AnomalyR1 ``de3f95c``).

    1.0 when the completion holds ``<think>(.*?)</think>\\s*<answer>(.*?)</answer>``
    (case-sensitive, across lines) and :func:`~iad_pipeline.answers.anomalyr1_choice` of the
    last ``<answer>`` block, stripped, equals ``solution`` exactly (no case folding); else 0.0.
    Without the think-then-answer structure a right letter scores 0.

    Example:
        >>> anomalyr1_choice_score("<think>hmm</think><answer>B</answer>", "B")
        1.0
        >>> anomalyr1_choice_score("<answer>B</answer>", "B")
        0.0
        >>> anomalyr1_choice_score("<think>A or B</think> <answer>I choose B.</answer>", "B")
        1.0
    """
    if not _think_then_answer(text):
        return 0.0
    answer = last_tag(text, "answer", ignore_case=False)
    choice = None if answer is None else anomalyr1_choice(answer.strip())
    return 1.0 if choice == solution else 0.0


@dataclass(frozen=True)
class AdfmClassification(Reward):
    """``adfm_classification``: :func:`adfm_classification_score` against ``solution``.

    AD-FM's own classification reward (its recipe's accuracy term), equal to the released
    ``AnomalyClsReward`` on every input; a row whose solution is ``None`` gets ``None``.

    Example:
        >>> AdfmClassification()(["<answer>a</answer>", "<answer>a.</answer>"], solution=["a", "a"])
        [1.0, 0.8]
    """

    name = "adfm_classification"

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        solutions = column(columns, "solution", len(completions), self.name)
        return [
            None if sol is None else adfm_classification_score(text, sol)
            for text, sol in zip(texts(completions), solutions, strict=True)
        ]


@dataclass(frozen=True)
class AnomalyR1Choice(Reward):
    """``anomalyr1_choice``: :func:`anomalyr1_choice_score` against ``solution``.

    AnomalyR1's accuracy reward, equal to the released ``choice_reward`` on every input; a row
    whose solution is ``None`` gets ``None``.

    Example:
        >>> AnomalyR1Choice()(["<think>.</think><answer>C</answer>", "C"], solution=["C", "C"])
        [1.0, 0.0]
    """

    name = "anomalyr1_choice"

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        solutions = column(columns, "solution", len(completions), self.name)
        return [
            None if sol is None else anomalyr1_choice_score(text, sol)
            for text, sol in zip(texts(completions), solutions, strict=True)
        ]
