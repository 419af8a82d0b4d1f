"""The one answer parser: reads option letters, tag blocks and boxes out of model output.

Training rewards (``training.rewards``) and evaluation read completions with these functions
only, so a reward and the metric reported for the same text cannot disagree. Each letter rule
is named after the code it reproduces, because the published protocols read letters
differently and a number is only comparable under its own rule:

- :func:`mmad_letter`: MMAD's official scorer (``GPT4Query.parse_answer``): the *last*
  standalone ``A``-``E`` in the whole response, else the option text closest to the response.
- :func:`think_letter`: EMIT's MMAD evaluation (``evaluate_batch_mmad_choice.py``): the
  *first* standalone ``A``-``E`` inside the last ``<answer>`` block (the whole text without one).
- :func:`anomalyr1_choice`: AnomalyR1's ``extract_choice`` keyword-and-position heuristic,
  which its ROAM reward applies to the think and the answer blocks.
- :func:`emit_choice`: EMIT's training reward (``CLSAccuracyORM_choice``): the first
  single-line ``<answer>`` block, normalised; the caller checks it against ``a``-``d``.
- :func:`answer_letter`: our rule for rewards: the first standalone letter of the last
  ``<answer>`` block, or a bare lower-case letter as the whole answer (AD-FM answers ``a``/``b``).

Every function accepts anything (a ``str``, ``None``, another object) and never raises: input
that is not a string, or holds nothing recognisable, gives the "nothing found" result (``None``,
``""`` or ``[]``, as each documents).
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

# MMAD and EMIT: a letter that stands alone (word boundaries on both sides).
_STANDALONE_LETTER = re.compile(r"\b([A-E])\b")
# AD-FM (scripts/grpo/plugin_adfm.py, parse_bbox_list): four non-negative numbers in brackets.
_NUMBER = r"\s*(\d+(?:\.\d+)?)\s*"
_ADFM_BOX = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")
# Our tolerant scan for JSON-like boxes: a box key, a colon, then a bracketed list whose items
# may be quoted or written with exponents ({"bbox_2d": [..]}, {'Position': [..]}).
_KEYED_BOX = re.compile(
    r"""["']?(?:bbox_2d|bbox|box|position)["']?\s*:\s*\[([^\[\]]*)\]""", re.IGNORECASE
)
_JSON_NUMBER = re.compile(
    r"""\s*["']?\s*(\+?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*["']?\s*"""
)

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


def completion_text(completion: Any) -> str:
    """The text of one completion, as TRL hands it to a reward function.

    Args:
        completion: a plain string (standard format); a list of chat messages (TRL's
            conversational format, ``[{"role": "assistant", "content": str}]``), whose last
            assistant message is read; one message dict; or content given as a list of parts
            (``[{"type": "text", "text": ...}]``), whose text parts are joined.

    Returns:
        The text, or ``""`` for ``None`` and anything else that holds no text.

    Example:
        >>> completion_text("<answer>A</answer>")
        '<answer>A</answer>'
        >>> completion_text([{"role": "assistant", "content": "<answer>B</answer>"}])
        '<answer>B</answer>'
        >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "C"}]}])
        'C'
        >>> completion_text(None)
        ''
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence) and not isinstance(completion, bytes | bytearray):
        messages = [m for m in completion if isinstance(m, Mapping)]
        assistant = [m for m in messages if m.get("role") == "assistant"]
        chosen = assistant or messages
        return _content_text(chosen[-1].get("content")) if chosen else ""
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def _tag_patterns(
    tag: str, *, ignore_case: bool, loose: bool
) -> tuple[re.Pattern[str], re.Pattern[str]]:
    name = re.escape(tag)
    if loose:
        opening, closing = rf"<\s*{name}\s*>", rf"<\s*/\s*{name}\s*>"
    else:
        opening, closing = f"<{name}>", f"</{name}>"
    flags = re.IGNORECASE if ignore_case else 0
    return re.compile(opening, flags), re.compile(closing, flags)


def tag_blocks(
    text: Any, tag: str, *, dotall: bool = True, ignore_case: bool = True, loose: bool = False
) -> list[str]:
    """The contents of every ``<tag>...</tag>`` block, in order, unstripped.

    The result is that of ``re.findall(r"<tag>(.*?)</tag>", text, flags)``, found by a scan
    that stays linear in the length of the text: the regex itself takes quadratic time on the
    degenerate output of a looping model (thousands of ``<think>`` and no ``</think>``).

    Args:
        text: the completion text.
        tag: the tag name, e.g. ``"think"``.
        dotall: blocks may span lines (``re.DOTALL``); EMIT's training reward reads answers
            without it, so a newline inside the tags hides the block.
        ignore_case: match ``<THINK>`` like ``<think>`` (AD-FM does; EMIT and AnomalyR1 don't).
        loose: allow whitespace inside the angle brackets (``< answer >``, ``</ answer>``), as
            EMIT's MMAD evaluation does.

    Returns:
        The block contents, ``[]`` when there are none or ``text`` is not a string.

    Example:
        >>> tag_blocks("<think>a</think><THINK>b</THINK>", "think")
        ['a', 'b']
        >>> tag_blocks("<answer>\\nA</answer>", "answer", dotall=False)
        []
    """
    if not isinstance(text, str) or not isinstance(tag, str) or not tag:
        return []
    opening, closing = _tag_patterns(tag, ignore_case=ignore_case, loose=loose)
    blocks: list[str] = []
    pos, close = 0, None
    while (start := opening.search(text, pos)) is not None:
        # The nearest closing tag after this opening; closing tags are met in order, so one
        # found for an earlier opening still serves while it lies after this one.
        if close is None or close.start() < start.end():
            close = closing.search(text, start.end())
        if close is None:  # no later opening can be closed either
            break
        content = text[start.end() : close.start()]
        if dotall or "\n" not in content:
            blocks.append(content)
            pos = close.end()
        elif loose:  # an opening may span a line end here: retry at the next character
            pos = start.start() + 1
        else:  # no opening ending before this line end can close on its line
            pos = text.index("\n", start.end()) + 1
    return blocks


def first_tag(
    text: Any, tag: str, *, dotall: bool = True, ignore_case: bool = True, loose: bool = False
) -> str | None:
    """The content of the first ``<tag>`` block (see :func:`tag_blocks`), or ``None``.

    Example:
        >>> first_tag("<think> one </think><think>two</think>", "think")
        ' one '
        >>> first_tag("no tags", "think") is None
        True
    """
    blocks = tag_blocks(text, tag, dotall=dotall, ignore_case=ignore_case, loose=loose)
    return blocks[0] if blocks else None


def last_tag(
    text: Any, tag: str, *, dotall: bool = True, ignore_case: bool = True, loose: bool = False
) -> str | None:
    """The content of the last ``<tag>`` block (see :func:`tag_blocks`), or ``None``.

    Example:
        >>> last_tag("<answer>A</answer> then <answer>B</answer>", "answer")
        'B'
    """
    blocks = tag_blocks(text, tag, dotall=dotall, ignore_case=ignore_case, loose=loose)
    return blocks[-1] if blocks else None


def answer_text(text: Any) -> str | None:
    """The stripped content of the last ``<answer>`` block, or ``None`` without one.

    Tags are matched case-insensitively and may hold whitespace (``< answer >``); the block may
    span lines.

    Example:
        >>> answer_text("<think>...</think><answer>\\n B \\n</answer>")
        'B'
        >>> answer_text("B") is None
        True
    """
    block = last_tag(text, "answer", loose=True)
    return None if block is None else block.strip()


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


def _finite_box(values: Sequence[str]) -> list[float] | None:
    try:
        box = [float(v) for v in values]
    except ValueError:
        return None
    if len(box) != 4 or not all(math.isfinite(v) and v >= 0 for v in box):
        return None
    return box


def boxes_from_text(text: Any, *, strict: bool = False) -> list[list[float]]:
    """Boxes ``[x1, y1, x2, y2]`` written in the text, in order of appearance.

    AD-FM's pattern (``parse_bbox_list`` in ``scripts/grpo/plugin_adfm.py``) finds every
    bracketed list of four non-negative decimal numbers, ``\\[\\s*(\\d+(?:\\.\\d+)?)\\s*,``
    four times then ``\\]``: ``[-62, 231, 61, 382]`` and ``[1e2, 0, 5, 5]`` are not boxes.
    Unless ``strict``, a tolerant scan then adds boxes given as a JSON-like key and value
    (``bbox_2d``, ``bbox``, ``box`` or ``position``, any case, quoted or not) whose four numbers
    AD-FM's pattern misses: quoted (``"12"``), with an exponent or a bare decimal point; they
    must still be non-negative. Numbers that overflow to infinity are dropped with their box.

    Args:
        text: the text to scan (e.g. the first ``<think>`` block).
        strict: only AD-FM's pattern (what the localization reward reads).

    Returns:
        The boxes as floats, ``[]`` when none are found.

    Example:
        >>> boxes_from_text("defect at [10, 20, 30.5, 40] and [1,2,3]")
        [[10.0, 20.0, 30.5, 40.0]]
        >>> boxes_from_text('{"bbox_2d": ["1", "2", "3e1", "4"]}')
        [[1.0, 2.0, 30.0, 4.0]]
        >>> boxes_from_text('{"bbox_2d": ["1", "2", "3e1", "4"]}', strict=True)
        []
    """
    if not isinstance(text, str):
        return []
    found: list[tuple[int, list[float]]] = []
    spans: set[int] = set()
    for match in _ADFM_BOX.finditer(text):
        box = _finite_box(match.groups())
        spans.add(match.start())
        if box is not None:
            found.append((match.start(), box))
    if not strict:
        for match in _KEYED_BOX.finditer(text):
            if match.start(1) - 1 in spans:  # AD-FM's pattern already read this list
                continue
            items = match.group(1).split(",")
            numbers = [_JSON_NUMBER.fullmatch(item) for item in items]
            if len(items) == 4 and all(numbers):
                box = _finite_box([n.group(1) for n in numbers if n])
                if box is not None:
                    found.append((match.start(1) - 1, box))
        found.sort(key=lambda pair: pair[0])
    return [box for _, box in found]


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
