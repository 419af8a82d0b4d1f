"""The letter rules, each named after the code it reproduces (see :mod:`iad_pipeline.answers`).

MMAD's last standalone letter, EMIT's first letter of the last ``<answer>`` block and its
training reward's normalised block, AnomalyR1's keyword-and-position heuristic, our rule for
rewards, and the one place a letter becomes an option's text.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from iad_pipeline.answers.tags import answer_text, first_tag, last_tag

# MMAD and EMIT: a letter that stands alone (word boundaries on both sides).
_STANDALONE_LETTER = re.compile(r"\b([A-E])\b")

# AnomalyR1 (grpo_rec.py, extract_choice): letters not touching a lower-case letter, the
# keywords whose upper-cased form near a letter adds a point, and the punctuation that adds one
# when it follows the letter. The authors upper-case every keyword before the test, so only
# upper-case English (ANSWER, not "answer") ever scores; the Chinese ones are unchanged.
_R1_LETTER = re.compile(r"(?<![a-z])([A-D])(?![a-z])")
_R1_KEYWORDS = (
    "答案",
    "选择",
    "正确",
    "是",
    "对",
    "ANSWER",
    "CORRECT",
    "CHOOSE",
    "SELECT",
    "RIGHT",
    "认为",
    "应该",
    "觉得",
    "THINK",
    "BELIEVE",
    "SHOULD",
)
_R1_PUNCTUATION = "\u3002.!\uff01,\uff0c"  # full-width and ASCII full stop, "!", comma
_R1_WINDOW = 20
_R1_TAIL = 0.7


def _closest_option(text: str, options: Any) -> str | None:
    """MMAD's fallback: the letter of the option text closest to ``text`` (difflib, cutoff 0)."""
    if isinstance(options, Mapping):
        pairs = [(str(k), str(v)) for k, v in options.items()]
    elif isinstance(options, Sequence) and not isinstance(options, str | bytes | bytearray):
        pairs = [(chr(65 + i), str(v)) for i, v in enumerate(options)]
    else:
        return None
    if not pairs:
        return None
    closest = difflib.get_close_matches(text, [v for _, v in pairs], n=1, cutoff=0.0)
    if not closest:
        return None
    return next(k for k, v in pairs if v == closest[0])


def mmad_letter(text: Any, options: Mapping[str, str] | Sequence[str] | None = None) -> str | None:
    """MMAD's letter rule: the last standalone ``A``-``E`` in the whole response.

    Reproduces ``GPT4Query.parse_answer`` of jam-cc/MMAD plus its caller, which keeps the last
    match; when the response has no such letter and ``options`` are given, the option text
    closest to the response (``difflib.get_close_matches``, cutoff 0) gives the letter.

    Args:
        text: the model's response.
        options: ``{"A": "Yes.", ...}`` or the option texts in letter order.

    Returns:
        ``"A"``-``"E"``, an option key, or ``None`` when nothing is found.

    Example:
        >>> mmad_letter("B. No defect. Final: C")
        'C'
        >>> mmad_letter("there is no defect", {"A": "Yes.", "B": "No defect."})
        'B'
        >>> mmad_letter("", None) is None
        True
    """
    if not isinstance(text, str):
        return None
    letters = _STANDALONE_LETTER.findall(text)
    if letters:
        return letters[-1]
    return _closest_option(text, options) if options is not None else None


def think_letter(text: Any, options: Mapping[str, str] | Sequence[str] | None = None) -> str | None:
    """EMIT's evaluation rule: the first standalone ``A``-``E`` in the last ``<answer>`` block.

    Reproduces ``evaluate_batch_mmad_choice.py`` of guanwei49/EMIT: the last block matched by
    ``<\\s*answer\\s*>(.*?)<\\s*/\\s*answer\\s*>`` (``re.DOTALL``, case-sensitive), stripped, or
    the whole stripped text without one; then the *first* ``\\b([A-E])\\b``; with none and
    ``options`` given, the closest option text (as :func:`mmad_letter`). EMIT's own code guesses
    ``"A"`` when neither a letter nor options exist; we return ``None`` instead.

    Example:
        >>> think_letter("<think>A or B?</think><answer>B, not C</answer>")
        'B'
        >>> think_letter("The answer is D")
        'D'
        >>> think_letter("<answer>b</answer>") is None
        True
    """
    if not isinstance(text, str):
        return None
    block = last_tag(text, "answer", ignore_case=False, loose=True)
    source = (block if block is not None else text).strip()
    match = _STANDALONE_LETTER.search(source)
    if match:
        return match.group(1)
    return _closest_option(source, options) if options is not None else None


def answer_letter(text: Any) -> str | None:
    """Our reward rule: the option letter of the last ``<answer>`` block, upper-cased.

    The first standalone ``A``-``E`` of :func:`answer_text` (as EMIT's evaluation reads it),
    else the whole answer when it is one letter ``a``-``e`` in any case, optionally followed by
    a full stop (AD-FM's ``<answer>a</answer>``). A lower-case letter inside a sentence is not
    read, because it is usually the article "a". Without an ``<answer>`` block: ``None``.

    Example:
        >>> answer_letter("<answer>The answer is C.</answer>"), answer_letter("<answer>b</answer>")
        ('C', 'B')
        >>> answer_letter("<answer>a scratch</answer>") is None
        True
    """
    answer = answer_text(text)
    if answer is None:
        return None
    match = _STANDALONE_LETTER.search(answer)
    if match:
        return match.group(1)
    bare = answer.removesuffix(".").strip()
    return bare.upper() if len(bare) == 1 and bare in "abcde" else None


def emit_normalise(value: Any) -> str:
    """EMIT's normalisation of answers and solutions (``CLSAccuracyORM_choice``).

    In EMIT's order (``plugin.py``, guanwei49/EMIT ``01dc319``): strip surrounding whitespace
    first, then remove spaces, underscores, full stops and newlines, then lower-case. The
    order matters: ``"A\\t."`` strips nothing (it ends in a dot), loses the dot and keeps the
    tab, so it is ``"a\\t"``, not a valid option.

    Example:
        >>> emit_normalise(" B. "), emit_normalise("(A)"), emit_normalise("A\\t.")
        ('b', '(a)', 'a\\t')
    """
    if not isinstance(value, str):
        return ""
    value = value.strip()
    for ch in (" ", "_", ".", "\n"):
        value = value.replace(ch, "")
    return value.lower()


def emit_choice(text: Any) -> str:
    """EMIT's training-reward reading of a completion, normalised (see :func:`emit_normalise`).

    The first block matched by ``<answer>(.*?)</answer>`` *without* ``re.DOTALL`` and
    case-sensitively, stripped, or the whole stripped text without one. The caller compares it
    with the normalised solution and treats anything outside ``a``-``d`` as invalid: a newline
    inside the tags hides the block, so the whole text is read and found invalid.

    Example:
        >>> emit_choice("<think>x</think><answer> C. </answer>")
        'c'
        >>> emit_choice("<answer>\\nA\\n</answer>")
        '<answer>a</answer>'
    """
    if not isinstance(text, str):
        return ""
    block = first_tag(text, "answer", dotall=False, ignore_case=False)
    return emit_normalise((block if block is not None else text).strip())


def _r1_score(text: str, letter: str) -> int:
    pos = text.rfind(letter)
    context = text[max(0, pos - _R1_WINDOW) : min(len(text), pos + _R1_WINDOW)]
    score = sum(1 for keyword in _R1_KEYWORDS if keyword in context)
    if pos > len(text) * _R1_TAIL:
        score += 2
    if pos < len(text) - 1 and text[pos + 1] in _R1_PUNCTUATION:
        score += 1
    return score


def anomalyr1_choice(text: Any) -> str | None:
    """AnomalyR1's ``extract_choice`` (``grpo_rec.py``): the option a passage settles on.

    1. Whitespace runs become one space. A text now shorter than 3 characters loses every
       character that is neither a word character nor whitespace and its first character is
       returned as is (``"b"`` gives ``"b"``, ``" "`` gives ``" "``).
    2. Candidates: every ``A``-``D`` not touching a lower-case letter
       (``(?<![a-z])([A-D])(?![a-z])``, so ``"ABCD"`` gives four and ``"DEFECT"`` one). None:
       ``None``; exactly one occurrence: that letter.
    3. Otherwise each candidate letter is scored at its *last occurrence anywhere in the text*
       (``str.rfind``, which may land inside an upper-case word): +1 per keyword found in the
       40 characters around it (20 before, the letter, 19 after; upper-case English keywords
       such as ``ANSWER``, ``CHOOSE``, ``THINK`` and Chinese ones such as 答案, 选择), +2 when
       it lies beyond 70 % of the text's length, +1 when a full stop, ``!`` or comma (ASCII or
       full-width) follows it. A letter's score counts once per occurrence (three ``B`` score
       three times ``B``'s score).
    4. The highest score wins; ties go to the letter that occurred first.

    Kept literal from the released code where our notes were vaguer (cross-checked against it,
    outside the repository, on 200,000 generated strings): the keyword list is the code's 16
    (no ``OPTION`` or 选项); English keywords count only in upper case; a keyword partly
    outside the window does not count; a short text returns its first character even when it
    is no option letter.

    Example:
        >>> anomalyr1_choice("B")
        'B'
        >>> anomalyr1_choice("Option A looks plausible, but the answer is B.")
        'B'
        >>> anomalyr1_choice("Option A looks plausible, but the ANSWER is B.")  # A twice
        'A'
        >>> anomalyr1_choice("no letter here") is None
        True
    """
    if not isinstance(text, str) or not text:
        return None
    text = re.sub(r"\s+", " ", text)
    if len(text) < 3:
        text = re.sub(r"[^\w\s]", "", text)
        return text[0] if text else None
    occurrences = _R1_LETTER.findall(text)
    if not occurrences:
        return None
    if len(occurrences) == 1:
        return occurrences[0]
    best, best_score = None, -1
    for letter, count in Counter(occurrences).items():  # insertion order = first occurrence
        score = count * _r1_score(text, letter)
        if score > best_score:
            best, best_score = letter, score
    return best


def chosen_option(letter: Any, options: Any) -> str | None:
    """The text of the option a parsed letter names, or ``None`` (no letter, or out of range).

    The one place a letter becomes an option: ``options`` in the order they were lettered
    (``A`` the first).

    Example:
        >>> chosen_option("B", ["Yes.", "No."]), chosen_option("C", ["Yes.", "No."])
        ('No.', None)
        >>> chosen_option(None, ["Yes."]) is None, chosen_option("b", ["Yes.", "No."]) is None
        (True, True)
    """
    if not isinstance(letter, str) or len(letter) != 1 or not "A" <= letter <= "Z":
        return None
    if not isinstance(options, Sequence) or isinstance(options, str | bytes):
        return None
    index = ord(letter) - ord("A")
    return str(options[index]) if index < len(options) else None
