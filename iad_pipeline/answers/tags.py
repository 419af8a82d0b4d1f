"""Completion text and tag blocks: what the letter and box rules read (``<think>``, ``<answer>``).

Part of the one answer parser (:mod:`iad_pipeline.answers`): every function accepts anything
and never raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


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
