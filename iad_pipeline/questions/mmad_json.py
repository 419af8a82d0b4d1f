"""MMAD's ``mmad.json``, read into the question table and written back from it.

The file is a json object keyed by query image path relative to the data root
(``DS-MVTec/bottle/image/broken_large/000.png``); each value holds ``image_path`` (relative
to ``<source>/<category>/``), ``mask_path`` (same base, empty for normal images; a folder
ending in ``/`` when there are several masks), ``similar_templates`` and ``random_templates``
(root-relative normal images) and ``conversation``: ``[{"Question", "Answer", "Options":
{"A": ...}, "type", "annotation"}]``. ``Question`` is the bare question: MMAD's evaluation
adds the options (``"Question {i}: {Q} \\n" + "A. opt\\n"...``) when it asks.

Reading re-letters options in their key order (as MMAD's ``parse_conversation`` does), keeps
the raw type as the tag ``raw_type:<type>`` and the question's number in its image's
conversation as ``mmad_question:<i>`` (MMAD numbers the question by it).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from iad_pipeline.datasets.mmad import load_mmad_json
from iad_pipeline.fsutil import write_text
from iad_pipeline.questions.prompts import (
    CHOICE_STYLES,
    LETTERS,
    MMAD_MERGED_TYPE,
    bare_question,
    format_question,
)
from iad_pipeline.questions.schema import (
    QUESTIONS_SCHEMA,
    QuestionError,
    check_questions,
    knowledge_key,
    question_id,
)

log = logging.getLogger(__name__)

RAW_TYPE_TAG = "raw_type:"
NUMBER_TAG = "mmad_question:"
# Our task names of MMAD's types; the others become their type in snake case.
TASK_OF_TYPE = {
    "Anomaly Detection": "anomaly_detection",
    "Defect Classification": "defect_classification",
    "Defect Localization": "defect_localization",
    "Object Classification": "object_classification",
}


class MmadJsonError(QuestionError):
    """An mmad.json that is missing, not json, or not in MMAD's layout."""


# MMAD's answer files: "Question {i}: " before the question text (gpt4v.py parse_conversation).
_NUMBER_PREFIX = re.compile(r"^Question \d+: ")
_OPTION_LINE = re.compile(r"^[A-E]\. ")


def answer_file_question(value: Any) -> str | None:
    """The bare question of an answer record's ``question`` field, whatever its shape.

    MMAD's answer files (``result/answers_{k}_shot_{model}.json``, written by
    ``qwen2_5_vl_query.py`` and ``gpt4v.py``, jam-cc/MMAD ``bad03b4``) store the content part
    that was asked: ``{"type": "text", "text": "Question 1: {Q} \\nA. ...\\n", "options":
    {"A": ...}}``; EMIT's store ``{"type": "text", "text": "{Q} \\nA. ...\\n"}`` with the
    options beside it; a conversation item has ``Question``; our files store the string. The
    number prefix and the option lines are removed.

    Example:
        >>> answer_file_question({"type": "text", "options": {"A": "Yes.", "B": "No."},
        ...     "text": "Question 1: Is there any defect in the object? \\nA. Yes.\\nB. No.\\n"})
        'Is there any defect in the object?'
        >>> answer_file_question({"type": "text", "text": "Where is it? \\nA. Top.\\nB. Left.\\n"})
        'Where is it?'
        >>> answer_file_question({"Question": "Is it broken?"}), answer_file_question("Q?")
        ('Is it broken?', 'Q?')
    """
    if isinstance(value, str) or value is None:
        return value
    if not isinstance(value, Mapping):
        return None
    if isinstance(value.get("Question"), str):
        return value["Question"]
    text = value.get("text")
    if not isinstance(text, str):
        return None
    text = _NUMBER_PREFIX.sub("", text, count=1)
    options = value.get("options")
    if isinstance(options, Mapping):
        return bare_question(text, [str(v) for v in options.values()])
    lines = text.split("\n")
    while lines and (not lines[-1] or _OPTION_LINE.match(lines[-1])):
        lines.pop()
    return "\n".join(lines).removesuffix(" ")


def task_of_type(raw_type: str) -> str:
    """Our task name of an MMAD type string.

    >>> task_of_type("Defect Localization"), task_of_type("Object Structure")
    ('defect_localization', 'object_structure')
    """
    return TASK_OF_TYPE.get(raw_type, raw_type.strip().lower().replace(" ", "_"))


def _item(path: Path, key: str, i: int, item: Any) -> tuple[str, list[str], str, str, Any]:
    """(bare question, options, answer letter, raw type, annotation) of one conversation item."""
    where = f"{path}: {key!r}, conversation item {i + 1}"
    if not isinstance(item, dict):
        msg = f"{where}: found {type(item).__name__}; expected an object with Question, Options"
        raise MmadJsonError(msg)
    question, opts, answer, kind = (item.get(k) for k in ("Question", "Options", "Answer", "type"))
    if not isinstance(question, str) or not isinstance(kind, str):
        msg = f"{where}: Question and type must be strings, found {question!r} and {kind!r}"
        raise MmadJsonError(msg)
    if not isinstance(opts, dict) or not opts or len(opts) > len(LETTERS):
        msg = f"{where}: found Options {opts!r}; expected an object of 1 to {len(LETTERS)} options"
        raise MmadJsonError(msg)
    keys = list(opts)
    if answer not in keys:
        msg = f"{where}: Answer {answer!r} is not one of the option keys {keys}; fix the item"
        raise MmadJsonError(msg)
    options = [str(v) for v in opts.values()]
    return question, options, LETTERS[keys.index(answer)], kind, item.get("annotation")


def read_mmad_json(
    path: Path, root: Path | None = None, *, skip_invalid: bool = False
) -> pl.DataFrame:
    """The questions of an mmad.json as a question table (style ``mmad``).

    ``sample_id`` is ``mmad/<category>/test/<label>/<stem>`` as the samples table builds it
    (category = second path part, label = parent folder); ``image_path`` is ``root/key`` (the
    key itself without ``root``), ``reference_image`` the first similar template, resolved the
    same way. A malformed entry raises :class:`MmadJsonError` naming the file and key, unless
    ``skip_invalid`` (then it is logged and left out).
    """
    path = Path(path)
    cols: dict[str, list] = {name: [] for name in QUESTIONS_SCHEMA}
    skipped = 0

    def resolve(rel: str | None) -> str | None:
        return None if not rel else str(root / rel) if root is not None else rel

    for key, entry in load_mmad_json(path).items():
        try:
            rows = _entry_rows(path, key, entry)
        except MmadJsonError:
            if not skip_invalid:
                raise
            log.warning("skipping %s entry %r: not in MMAD's layout", path, key, exc_info=True)
            skipped += 1
            continue
        parts = key.split("/")
        source, category, label = parts[0], parts[1], parts[-2]
        sid = f"mmad/{category}/test/{label}/{PurePosixPath(key).stem}"
        templates = entry.get("similar_templates") or []
        common = {
            "sample_id": sid,
            "dataset": "mmad",
            "category": category,
            "source": source,
            "style": "mmad",
            "image_path": resolve(key),
            "reference_image": resolve(templates[0] if templates else None),
            "knowledge_key": knowledge_key("mmad", source, category),
            "boxes": [],
            "model_hw": [],
            "split": "",
        }
        for i, (question, options, answer, kind, annotation) in enumerate(rows):
            task = task_of_type(kind)
            record = {
                **common,
                "question_id": question_id("mmad", task, sid, str(i)),
                "task": task,
                "mmad_type": MMAD_MERGED_TYPE.get(kind, kind),
                "question": format_question(question, options),
                "options": options,
                "answer": answer,
                "recipe_tags": [f"{RAW_TYPE_TAG}{kind}", f"{NUMBER_TAG}{i + 1}"],
                "annotation": None if annotation is None else bool(annotation),
            }
            for name, values in cols.items():
                values.append(record[name])
    if skipped:
        log.warning("%s: skipped %d malformed entries", path, skipped)
    return pl.DataFrame(cols, schema=QUESTIONS_SCHEMA)


def _entry_rows(path: Path, key: str, entry: Any) -> list[tuple]:
    parts = key.split("/")
    if len(parts) < 4 or not isinstance(entry, dict):
        msg = (
            f"{path}: entry {key!r}: expected a key <source>/<category>/.../<image> mapped to an "
            f"object, found {type(entry).__name__}"
        )
        raise MmadJsonError(msg)
    conversation = entry.get("conversation")
    if not isinstance(conversation, list):
        msg = f"{path}: entry {key!r}: found conversation {conversation!r}; expected a list"
        raise MmadJsonError(msg)
    return [_item(path, key, i, item) for i, item in enumerate(conversation)]


def _relative(path: str, data_root: Path, what: str) -> str:
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return Path(os.path.abspath(p)).relative_to(os.path.abspath(data_root)).as_posix()
    except ValueError as exc:
        msg = (
            f"{what} {path}: not under the data root {data_root}; mmad.json keys are relative "
            "to it; pass the folder that holds every image as data_root"
        )
        raise QuestionError(msg) from exc


def _mask_path(masks: Sequence[str], class_dir: Path, folder: bool) -> str:
    """One mask relative to the class folder, or the folder of several (``.../``)."""
    if not masks:
        return ""
    paths = [os.path.relpath(os.path.abspath(m), os.path.abspath(class_dir)) for m in masks]
    if len(paths) == 1 and not folder:
        return Path(paths[0]).as_posix()
    common = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
    return Path(common).as_posix().rstrip("/") + "/"


def _raw_type(tags: Sequence[str] | None, mmad_type: str) -> str:
    for tag in tags or ():
        if tag.startswith(RAW_TYPE_TAG):
            return tag[len(RAW_TYPE_TAG) :]
    return mmad_type


def write_mmad_json(
    questions: pl.DataFrame,
    path: Path,
    *,
    data_root: Path,
    samples: pl.DataFrame | None = None,
    templates: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> Path:
    """Write choice questions (styles emit, anomalyr1, mmad) as an mmad.json, atomically.

    Questions are grouped per image in the order they come; each image's entry gets
    ``mask_path`` from ``samples`` (its ``mask_paths``) if given, and templates from
    ``templates`` (``sample_id -> {"similar_templates": [...], "random_templates": [...]}``)
    or else the row's reference image in both lists, so MMAD's default (random template) run
    is one-shot too. Paths under ``data_root`` are written relative to it.
    """
    bad_styles = sorted(set(questions["style"].unique()) - set(CHOICE_STYLES))
    if bad_styles:
        msg = (
            f"{path}: found questions of styles {bad_styles}; mmad.json holds lettered choice "
            f"questions only ({', '.join(CHOICE_STYLES)}); filter the other styles out first"
        )
        raise QuestionError(msg)
    check_questions(questions, where=str(path))
    masks: dict[str, list[str]] = {}
    if samples is not None:
        masks = dict(zip(samples["sample_id"], samples["mask_paths"].to_list(), strict=True))
    templates = templates or {}
    out: dict[str, dict] = {}
    for row in questions.iter_rows(named=True):
        key = _relative(row["image_path"], data_root, f"question {row['question_id']}: image")
        entry = out.get(key)
        if entry is None:
            entry = out[key] = _new_entry(row, key, data_root, masks, templates)
        options = row["options"]
        entry["conversation"].append(
            {
                "Question": bare_question(row["question"], options),
                "Answer": row["answer"],
                "Options": {LETTERS[i]: text for i, text in enumerate(options)},
                "type": _raw_type(row["recipe_tags"], row["mmad_type"]),
                "annotation": True if row["annotation"] is None else row["annotation"],
            }
        )
    return write_text(Path(path), json.dumps(out, indent=2, ensure_ascii=False) + "\n")


def _new_entry(
    row: Mapping[str, Any],
    key: str,
    data_root: Path,
    masks: Mapping[str, Sequence[str]],
    templates: Mapping[str, Mapping[str, Sequence[str]]],
) -> dict:
    parts = key.split("/")
    # MMAD names LOCO's mask folder even when it holds one mask.
    is_loco = parts[0] == "MVTec-LOCO"
    if len(parts) < 3:
        msg = (
            f"image {key!r}: mmad.json keys need <dataset>/<category>/.../<image> under the data "
            f"root {data_root}; write the images in that layout"
        )
        raise QuestionError(msg)
    what = f"question {row['question_id']}: template"
    ref = [_relative(row["reference_image"], data_root, what)] if row["reference_image"] else []
    given = templates.get(row["sample_id"], {})
    similar = [_relative(p, data_root, what) for p in given.get("similar_templates", ref)]
    random = [_relative(p, data_root, what) for p in given.get("random_templates", similar)]
    return {
        "image_path": "/".join(parts[2:]),
        "mask_path": _mask_path(
            masks.get(row["sample_id"], ()), data_root / parts[0] / parts[1], folder=is_loco
        ),
        "similar_templates": similar,
        "random_templates": random,
        "conversation": [],
    }
