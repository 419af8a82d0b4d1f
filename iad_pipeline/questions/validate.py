"""Predicates over a question table, for asset checks and tests."""

from __future__ import annotations

import polars as pl


def invalid_questions(questions: pl.DataFrame) -> pl.DataFrame:
    """Rows whose answer letter is not one of their options, or whose options repeat.

    Letters are case-insensitive (AD-FM's binary answers are ``a``/``b``).

    >>> df = pl.DataFrame({"answer": ["B", "a", "C", "A"],
    ...                    "options": [["x", "y"], ["x", "y"], ["x", "y"], ["x", "x"]]})
    >>> invalid_questions(df)["answer"].to_list()
    ['C', 'A']
    """
    bad = [
        not (len(answer) == 1 and 0 <= ord(answer.upper()) - 65 < len(options))
        or len(set(options)) != len(options)
        for answer, options in zip(questions["answer"], questions["options"], strict=True)
    ]
    return questions.filter(pl.Series(bad, dtype=pl.Boolean))
