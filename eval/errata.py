"""MMAD's known errors, applied side by side with the original: ``mmad_version``.

``original`` (the default) evaluates MMAD as published, so numbers compare with the papers;
``corrected`` applies the errata of ``eval/mmad_errata.yaml`` (each entry: the keys, what
is wrong, the issue that reported it, the action) to the question table and the template
lists before any question is asked. The errata file's ``version`` is recorded with every
corrected run, and the protocol name carries ``+mmad_corrected``, so the two versions are
stored, scored and ranked apart and both show when both were run.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from eval.mmad_files import image_key, question_type
from iad_pipeline.errors import IadError
from iad_pipeline.questions.prompts import LETTERS

ERRATA_PATH = Path(__file__).parent / "mmad_errata.yaml"


class ErrataError(IadError, ValueError):
    """An errata file that cannot be read or holds an unknown action."""


@dataclass(frozen=True)
class Erratum:
    """One known error: which keys, what is wrong, who reported it, what to do."""

    id: str
    keys: str
    action: str
    what: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Corrected:
    """The corrected questions and templates, and what each erratum changed."""

    questions: pl.DataFrame
    templates: dict[str, dict[str, list[str]]] | None
    changes: dict[str, int]
    version: int


def load_errata(path: Path | str = ERRATA_PATH) -> tuple[int, list[Erratum]]:
    """The errata file's version and entries, checked.

    >>> version, errata = load_errata()
    >>> version >= 1, sorted({e.source.split("#")[0] for e in errata})
    (True, ['jam-cc/MMAD'])
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{path}: unreadable errata file ({exc}); expected YAML with version and errata"
        raise ErrataError(msg) from exc
    if not isinstance(data, dict) or not isinstance(data.get("errata"), list):
        msg = f"{path}: expected a mapping with 'version' and a list 'errata'"
        raise ErrataError(msg)
    out = []
    for i, raw in enumerate(data["errata"]):
        base = {k: raw.get(k) for k in ("id", "keys", "action", "what", "source")}
        missing = [k for k, v in base.items() if not isinstance(v, str) or not v]
        if missing or base["action"] not in ACTIONS:
            msg = (
                f"{path}: erratum {i + 1} ({raw.get('id')!r}) lacks {missing} or has action "
                f"{raw.get('action')!r}; expected id, keys, action ({', '.join(ACTIONS)}), "
                "what and source"
            )
            raise ErrataError(msg)
        params = {k: v for k, v in raw.items() if k not in base}
        out.append(Erratum(**base, params=params))
    return int(data.get("version", 0)), out


def _matches(key: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(key, pattern)


def _same_text(a: str, b: str) -> bool:
    return a.strip().rstrip(".").casefold() == b.strip().rstrip(".").casefold()


@dataclass
class _Work:
    """The rows being corrected: their keys, which are kept, and the template lists."""

    rows: list[dict[str, Any]]
    keys: list[str]
    keep: list[bool]
    root: Path
    templates: dict[str, dict[str, list[str]]] | None


def _drop_missing_templates(w: _Work, e: Erratum) -> int:
    """Remove listed templates whose file is absent; the number removed."""
    n = 0
    for key, lists in (w.templates or {}).items():
        if _matches(key, e.keys):
            for name, paths in lists.items():
                present = [p for p in paths if (w.root / p).is_file()]
                n += len(paths) - len(present)
                lists[name] = present
    return n


def _drop_questions(w: _Work, e: Erratum) -> int:
    """Drop the matching questions (of ``type`` if given); the number dropped."""
    kind, n = e.params.get("type"), 0
    for i, r in enumerate(w.rows):
        if w.keep[i] and _matches(w.keys[i], e.keys) and kind in (None, question_type(r)):
            w.keep[i], n = False, n + 1
    return n


def _drop_images_answering(w: _Work, e: Erratum) -> int:
    """Drop every question of the images whose ``type`` question answers ``text``."""
    kind, text = e.params.get("type"), str(e.params.get("text", "")).casefold()
    bad = {
        w.keys[i]
        for i, r in enumerate(w.rows)
        if _matches(w.keys[i], e.keys)
        and question_type(r) == kind
        and r["answer"] in LETTERS[: len(r["options"])]
        and text in r["options"][LETTERS.index(r["answer"])].casefold()
    }
    n = 0
    for i in range(len(w.rows)):
        if w.keep[i] and w.keys[i] in bad:
            w.keep[i], n = False, n + 1
    return n


def _set_answer(w: _Work, e: Erratum) -> int:
    """Point the matching ``type`` questions' answer at the option reading ``answer_text``."""
    kind, wanted, n = e.params.get("type"), str(e.params.get("answer_text", "")), 0
    for i, r in enumerate(w.rows):
        if w.keep[i] and _matches(w.keys[i], e.keys) and question_type(r) == kind:
            found = [j for j, o in enumerate(r["options"]) if _same_text(o, wanted)]
            if found and r["answer"] != LETTERS[found[0]]:
                r["answer"], n = LETTERS[found[0]], n + 1
    return n


_APPLY = {
    "drop_missing_templates": _drop_missing_templates,
    "drop_questions": _drop_questions,
    "drop_images_answering": _drop_images_answering,
    "set_answer": _set_answer,
}
ACTIONS = tuple(_APPLY)  # the actions an errata file may name


def apply_errata(
    questions: pl.DataFrame,
    templates: Mapping[str, Mapping[str, Sequence[str]]] | None,
    image_root: Path | str,
    errata: tuple[int, list[Erratum]] | None = None,
) -> Corrected:
    """MMAD corrected: the errata applied to a question table and its template lists.

    Args:
        questions: the MMAD question table (``read_mmad_json``), image paths under
            ``image_root``.
        templates: ``mmad_templates(mmad.json)`` (``None``: no template list to correct).
        image_root: MMAD's data root (keys are relative to it; templates are looked up there).
        errata: ``load_errata()`` by default.

    Returns:
        The corrected table and templates, the number of rows or templates each erratum
        changed (0: it matched nothing in this data), and the errata version.
    """
    version, entries = errata if errata is not None else load_errata()
    root = Path(image_root)
    rows = questions.to_dicts()
    work = _Work(
        rows=rows,
        keys=[image_key(r["image_path"], root) for r in rows],
        keep=[True] * len(rows),
        root=root,
        templates=None
        if templates is None
        else {k: {kind: list(v) for kind, v in e.items()} for k, e in templates.items()},
    )
    changes = {e.id: _APPLY[e.action](work, e) for e in entries}
    table = pl.DataFrame(
        [r for r, k in zip(rows, work.keep, strict=True) if k], schema=questions.schema
    )
    return Corrected(table, work.templates, changes, version)
