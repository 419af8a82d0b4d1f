"""Answer records: one row per asked question, read from MMAD's files, our JSONL or parquet.

Columns of :data:`ANSWERS_SCHEMA`:

- ``run_id``, ``question_id``: which run asked which question of our bank (null in MMAD's
  files).
- ``image``: MMAD's key, the image path relative to the data root
  (``"DS-MVTec/bottle/image/crack/000.png"``).
- ``dataset``: the row of MMAD's table, the key's first path part (``"DS-MVTec"``); for our
  own sets the dataset key. Filled from ``image`` when missing.
- ``category``: the key's second path part (``"bottle"``). Filled from ``image`` when missing.
- ``question``: the bare question text (MMAD's files store the conversation item, a dict whose
  ``Question`` is read).
- ``question_type``: MMAD's raw type string (``"Object Structure"``, not the merged column).
- ``correct_answer``: the letter.
- ``response``: the model's raw text.
- ``gpt_answer``: what MMAD's scripts store and its scorer reads: the parsed letter, or the raw
  response when nothing parses.
- ``parsed_mmad``, ``parsed_think``: the letter by MMAD's rule and by the think-mode rule
  (:func:`parse_response`), null when nothing parses.
- ``latency_s``: seconds the model took for this answer.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from iad_pipeline.answers import mmad_letter, think_letter
from iad_pipeline.errors import IadError
from iad_pipeline.fsutil import write_text
from iad_pipeline.questions.mmad_json import answer_file_question

log = logging.getLogger(__name__)

ANSWERS_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "question_id": pl.String(),
    "image": pl.String(),
    "dataset": pl.String(),
    "category": pl.String(),
    "question": pl.String(),
    "question_type": pl.String(),
    "correct_answer": pl.String(),
    "response": pl.String(),
    "gpt_answer": pl.String(),
    "parsed_mmad": pl.String(),
    "parsed_think": pl.String(),
    "latency_s": pl.Float64(),
}
# The fields of one record in MMAD's answers_{k}_shot_{model}.json, in its order.
MMAD_ANSWER_FIELDS = ("image", "question", "question_type", "correct_answer", "gpt_answer")
# A record cannot be placed in MMAD's table without these.
REQUIRED = ("image", "question_type")
SUFFIXES = (".json", ".jsonl", ".parquet")


class AnswerRecordsError(IadError, ValueError):
    """An answer file that is missing, unreadable or not in a supported layout."""


def parse_response(
    response: str | None, options: Mapping[str, str] | None = None
) -> tuple[str | None, str | None]:
    """The letter a response gives, by MMAD's rule and by the think-mode rule.

    MMAD's rule (:func:`iad_pipeline.answers.mmad_letter`) takes the last standalone ``A``-``E``
    of the whole text and falls back to the option text closest to the response. The
    think-mode rule (:func:`iad_pipeline.answers.think_letter`) takes the first standalone
    letter of the last ``<answer>`` block; it gets no options, because the closest option to a
    page of reasoning is noise rather than an answer.

    Args:
        response: the model's raw text.
        options: ``{"A": "Yes.", "B": "No."}``, the question's options.

    Returns:
        ``(parsed_mmad, parsed_think)``, each a letter or ``None``.

    Example:
        >>> parse_response("<think>A or B?</think><answer>B</answer>")
        ('B', 'B')
        >>> parse_response("<think>Not A.</think><answer>B, then C</answer>")
        ('C', 'B')
        >>> parse_response("yes, there is one", {"A": "Yes.", "B": "No."})
        ('A', None)
        >>> parse_response(None)
        (None, None)
    """
    return mmad_letter(response, options), think_letter(response)


def _path_part(image: pl.Expr, i: int) -> pl.Expr:
    return image.str.split("/").list.get(i, null_on_oob=True)


def _finish(df: pl.DataFrame, source: str) -> pl.DataFrame:
    """Add missing columns as null, fill dataset/category from the key, check required ones."""
    missing = [c for c in ANSWERS_SCHEMA if c not in df.columns]
    df = df.with_columns(pl.lit(None, dtype=ANSWERS_SCHEMA[c]).alias(c) for c in missing)
    try:
        df = df.select(pl.col(c).cast(t) for c, t in ANSWERS_SCHEMA.items())
    except pl.exceptions.PolarsError as exc:
        msg = f"{source}: columns do not fit the answer schema ({exc}); expected {ANSWERS_SCHEMA}"
        raise AnswerRecordsError(msg) from exc
    image = pl.col("image")
    df = df.with_columns(
        dataset=pl.coalesce("dataset", _path_part(image, 0)),
        category=pl.coalesce("category", _path_part(image, 1)),
    )
    for column in REQUIRED:
        bad = df.with_row_index().filter(pl.col(column).is_null() | (pl.col(column) == ""))
        if bad.height:
            msg = (
                f"{source}: record {bad['index'][0] + 1} (and {bad.height - 1} more) has no "
                f"{column!r}; expected a non-empty string in every record; fix the writer or "
                f"drop those records"
            )
            raise AnswerRecordsError(msg)
    return df


def _cell(source: str, i: int, column: str, value: Any) -> Any:
    """One value of record ``i``, checked against its column's type."""
    if column == "question" and isinstance(value, Mapping):
        value = answer_file_question(value)  # MMAD stores the content part it asked
    if value is None:
        return None
    if column == "latency_s":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        expected = "a number"
    elif isinstance(value, str):
        return value
    else:
        expected = "a string" + (" or MMAD's question dict" if column == "question" else "")
    msg = (
        f"{source}: record {i + 1}, field {column!r}: found {type(value).__name__} {value!r:.60}; "
        f"expected {expected} or null"
    )
    raise AnswerRecordsError(msg)


def records_frame(rows: Sequence[Mapping[str, Any]], source: str = "<records>") -> pl.DataFrame:
    """The answer table of record dicts (MMAD's five fields or any of our columns).

    Unknown fields are ignored, missing ones become null, ``dataset`` and ``category`` are
    read from ``image`` when absent, and a ``question`` dict contributes its ``Question``.

    Args:
        rows: the records.
        source: how to name their origin in error messages (usually the file).

    Raises:
        AnswerRecordsError: a record that is not an object, a field of the wrong type, or a
            record without ``image`` or ``question_type``.

    Example:
        >>> df = records_frame([{"image": "VisA/candle/test/bad/002.JPG",
        ...     "question": {"Question": "Is there a defect?"},
        ...     "question_type": "Anomaly Detection", "correct_answer": "A", "gpt_answer": "B"}])
        >>> df.select("dataset", "category", "question", "gpt_answer", "response").row(0)
        ('VisA', 'candle', 'Is there a defect?', 'B', None)
    """
    columns: dict[str, list[Any]] = {c: [] for c in ANSWERS_SCHEMA}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            msg = (
                f"{source}: record {i + 1} is {type(row).__name__}; expected an object with "
                f"the fields {', '.join(MMAD_ANSWER_FIELDS)}"
            )
            raise AnswerRecordsError(msg)
        for column, values in columns.items():
            values.append(_cell(source, i, column, row.get(column)))
    return _finish(pl.DataFrame(columns, schema=ANSWERS_SCHEMA), source)


def _too_deep(path: Path, line: int | None = None) -> str:
    where = f"line {line}" if line is not None else "the file"
    return (
        f"{path}: {where} nests JSON arrays or objects too deeply to read (more than about "
        f"{sys.getrecursionlimit()} levels); an answer record is one flat object"
    )


def _json_rows(path: Path, text: str) -> list[Any]:
    """Records of a JSON list (MMAD's format) or of JSON Lines (ours)."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{path}: not valid JSON ({exc}); expected MMAD's JSON list of answer records"
            raise AnswerRecordsError(msg) from exc
        except RecursionError as exc:
            raise AnswerRecordsError(_too_deep(path)) from exc
        return rows
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except RecursionError as exc:
            raise AnswerRecordsError(_too_deep(path, n)) from exc
        except json.JSONDecodeError as exc:
            hint = ""
            try:
                whole = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                whole = None
            if isinstance(whole, dict):
                hint = " (found one JSON object: is this mmad.json, the benchmark itself?)"
            msg = (
                f"{path}: line {n} is not a JSON object ({exc}){hint}; expected MMAD's JSON "
                f"list of answer records or one JSON object per line (JSONL)"
            )
            raise AnswerRecordsError(msg) from exc
    return rows


def load_answer_records(path: Path | str) -> pl.DataFrame:
    """Read an answer file into the table of :data:`ANSWERS_SCHEMA`, records in file order.

    Reads MMAD's own answer files (a JSON list of ``{image, question, question_type,
    correct_answer, gpt_answer}``, ``question`` a dict or a string), our JSON Lines (one record
    per line, any of our columns) and parquet. The JSON layouts are told apart by the first
    character, so a ``.json`` file may hold either. Missing columns become null.

    Args:
        path: a ``.json``, ``.jsonl`` or ``.parquet`` file.

    Raises:
        AnswerRecordsError: the file is missing, has another suffix, is not valid JSON or
            parquet, or holds records that do not fit the schema; the message names the file
            and the record.
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        msg = f"{path}: found suffix {path.suffix!r}; expected one of {', '.join(SUFFIXES)}"
        raise AnswerRecordsError(msg)
    if not path.is_file():
        msg = f"{path}: no such file; expected an answer file written by an evaluation run"
        raise AnswerRecordsError(msg)
    if path.suffix.lower() == ".parquet":
        try:
            df = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            msg = f"{path}: not a readable parquet file ({exc}); expected an answer table"
            raise AnswerRecordsError(msg) from exc
        return _finish(df.select(c for c in df.columns if c in ANSWERS_SCHEMA), str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{path}: not UTF-8 text ({exc}); expected JSON or JSON Lines"
        raise AnswerRecordsError(msg) from exc
    rows = _json_rows(path, text)
    if not isinstance(rows, list):
        msg = f"{path}: found JSON {type(rows).__name__}; expected a list of answer records"
        raise AnswerRecordsError(msg)
    df = records_frame(rows, str(path))
    log.debug("read %d answer records from %s", df.height, path)
    return df


def write_mmad_answers(records: pl.DataFrame, path: Path | str) -> Path:
    """Write records as MMAD's answer file (a JSON list, MMAD's five fields), atomically.

    ``question`` is written as the bare text (MMAD writes the conversation item; its scorer
    reads only ``image``, ``question_type``, ``correct_answer`` and ``gpt_answer``).

    Args:
        records: the answer table (at least MMAD's five columns).
        path: the file to write.

    Returns:
        The path written.

    Raises:
        AnswerRecordsError: a column MMAD's format needs is missing.
    """
    missing = [c for c in MMAD_ANSWER_FIELDS if c not in records.columns]
    if missing:
        msg = (
            f"{path}: the records lack {missing}; expected the columns "
            f"{list(MMAD_ANSWER_FIELDS)}; build them with records_frame or load_answer_records"
        )
        raise AnswerRecordsError(msg)
    rows = records.select(MMAD_ANSWER_FIELDS).to_dicts()
    return write_text(path, json.dumps(rows, indent=4, ensure_ascii=False) + "\n")
