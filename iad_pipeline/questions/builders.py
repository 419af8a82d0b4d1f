"""The question bank: multiple-choice questions about samples, built by EMIT's rules.

:func:`build_questions` turns the samples table (and the annotations table, for grid regions
and boxes) into the question table of :mod:`iad_pipeline.questions.schema`:

- **anomaly_detection**, every sample: ``Yes.`` / ``No.``
- **defect_classification**, anomalous samples whose label names a defect (not one of
  :data:`NON_SEMANTIC`): the label plus up to 3 distractors, drawn first from the category's
  own other defect names (samples labels and ``catalog.DEFECTS``), then the dataset's, then
  every name known; skipped when no distractor exists
- **defect_localization**, localizable annotations touching 1 to 8 of the 3x3 regions: the
  main region plus up to 3 regions the defect does not touch, each in a random EMIT wording
  (EMIT samples with replacement when short; we give fewer options instead)
- **object_classification**, every sample: the category plus up to 3 other categories, the
  dataset's first

Names are worded by :func:`~iad_pipeline.questions.prompts.emit_name`. Options are shuffled
by a generator seeded with ``seed`` and the question's id, so a question's options depend on
nothing but its own sample, the name pools and the seed: adding a sample with known names
leaves every other question as it was. Styles ``lr_iad`` and ``adfm`` give one binary
question per sample (:mod:`iad_pipeline.questions.builders_binary`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from iad_pipeline.datasets.catalog import DEFECTS
from iad_pipeline.questions.builders_binary import binary_question
from iad_pipeline.questions.prompts import (
    CHOICE_STYLES,
    EMIT_LOCATION_WORDS,
    EMIT_NO,
    EMIT_QUESTIONS,
    EMIT_YES,
    GRID_REGIONS,
    LETTERS,
    STYLES,
    emit_name,
    format_options,
)
from iad_pipeline.questions.schema import (
    CHOICE_TASKS,
    MMAD_TYPE_OF_TASK,
    QUESTIONS_SCHEMA,
    QuestionError,
    knowledge_key,
    question_id,
)

ALL = CHOICE_TASKS
# Dataset-level labels that say "anomalous" and nothing about the kind of defect.
NON_SEMANTIC = frozenset({"bad", "defect", "defective", "anomalous"})
DISTRACTORS = 3
SAMPLE_COLUMNS = ("sample_id", "dataset", "category", "label", "is_anomalous", "source")
ANNOTATION_COLUMNS = ("sample_id", "grid_regions", "grid_label", "localizable", "boxes")
# MMAD rows take their catalog names from their query set.
CATALOG_OF_SOURCE = {
    "DS-MVTec": "mvtec_ad",
    "MVTec-LOCO": "mvtec_loco",
    "VisA": "visa",
    "GoodsAD": "goodsad",
}


def is_defect_name(label: str) -> bool:
    """Whether a label names a kind of defect (not ``good``, not a bare "anomalous" label).

    >>> is_defect_name("broken_large"), is_defect_name("bad"), is_defect_name("good")
    (True, False, False)
    """
    return label != "good" and label.lower() not in NON_SEMANTIC


def pool_key(dataset: str, source: str) -> str:
    """The group whose names come second: the dataset, or for MMAD the query set.

    >>> pool_key("mmad", "VisA"), pool_key("visa", "visa")
    ('mmad:VisA', 'visa')
    """
    return f"mmad:{source}" if dataset == "mmad" else dataset


def _catalog_key(dataset: str, source: str) -> str | None:
    key = CATALOG_OF_SOURCE.get(source) if dataset == "mmad" else dataset
    return key if key in DEFECTS else None


def _worded(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({emit_name(n) for n in names}))


@dataclass
class Pools:
    """Distractor names in priority tiers, already worded by ``emit_name``."""

    defects_own: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    defects_group: dict[str, tuple[str, ...]] = field(default_factory=dict)
    defects_all: tuple[str, ...] = ()
    objects_group: dict[str, tuple[str, ...]] = field(default_factory=dict)
    objects_all: tuple[str, ...] = ()

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]]) -> Pools:
        own: dict[tuple[str, str], set[str]] = {}
        group: dict[str, set[str]] = {}
        cats: dict[str, set[str]] = {}
        for row in rows:
            g = pool_key(row["dataset"], row["source"])
            names = own.setdefault((g, row["category"]), set())
            group.setdefault(g, set())
            cats.setdefault(g, set()).add(row["category"])
            catalog = _catalog_key(row["dataset"], row["source"])
            if catalog is not None:
                names.update(DEFECTS[catalog].get(row["category"], ()))
                group[g].update(n for ns in DEFECTS[catalog].values() for n in ns)
                cats[g].update(DEFECTS[catalog])
            if row["is_anomalous"]:
                names.add(row["label"])
        for (g, _), names in own.items():
            group[g].update(names)
        everything = {n for by_cat in DEFECTS.values() for ns in by_cat.values() for n in ns}
        every_cat = {c for by_cat in DEFECTS.values() for c in by_cat}
        for names in group.values():
            everything.update(names)
        for names in cats.values():
            every_cat.update(names)

        def semantic(names: Iterable[str]) -> tuple[str, ...]:
            return _worded(n for n in names if is_defect_name(n))

        return cls(
            defects_own={k: semantic(v) for k, v in own.items()},
            defects_group={k: semantic(v) for k, v in group.items()},
            defects_all=semantic(everything),
            objects_group={k: _worded(v) for k, v in cats.items()},
            objects_all=_worded(every_cat),
        )


def pick(
    tiers: Sequence[Sequence[str]], correct: str, rng: np.random.Generator, k: int = DISTRACTORS
) -> list[str]:
    """Up to ``k`` distinct distractors, never ``correct``, from the tiers in order.

    A tier that has no more candidates than places left is taken whole (no draw), so the
    generator is only consumed where there is a choice.

    >>> rng = np.random.default_rng(0)
    >>> pick([["Crack.", "Hole."], ["Crack.", "Cut.", "Dent."]], "Hole.", rng, 2)
    ['Crack.', 'Dent.']
    >>> pick([["Hole."]], "Hole.", rng)
    []
    """
    chosen: list[str] = []
    seen = {correct}
    for tier in tiers:
        need = k - len(chosen)
        if need <= 0:
            break
        candidates = [c for c in tier if c not in seen]
        if len(candidates) > need:
            candidates = [candidates[int(i)] for i in rng.choice(len(candidates), need, False)]
        chosen += candidates
        seen.update(candidates)
    return chosen


def shuffled(correct: str, distractors: Sequence[str], rng: np.random.Generator) -> tuple:
    """Options in a random order and the letter of ``correct``.

    >>> shuffled("Yes.", ["No."], np.random.default_rng(0))
    (['Yes.', 'No.'], 'A')
    """
    ordered = [correct, *distractors]
    perm = rng.permutation(len(ordered))
    return [ordered[int(i)] for i in perm], LETTERS[int(np.flatnonzero(perm == 0)[0])]


def _defect_classification(row: Mapping, pools: Pools, rng: np.random.Generator) -> list | None:
    if not row["is_anomalous"] or not is_defect_name(row["label"]):
        return None
    g = pool_key(row["dataset"], row["source"])
    tiers = (pools.defects_own[(g, row["category"])], pools.defects_group[g], pools.defects_all)
    correct = emit_name(row["label"])
    distractors = pick(tiers, correct, rng)
    return [correct, distractors] if distractors else None


def _defect_localization(row: Mapping, rng: np.random.Generator) -> list | None:
    touched = set(row.get("grid_regions") or ())
    label = row.get("grid_label")
    if not (row["is_anomalous"] and row.get("localizable") and label in EMIT_LOCATION_WORDS):
        return None
    if len(touched | {label}) >= len(GRID_REGIONS):
        return None
    untouched = [r for r in GRID_REGIONS if r not in touched and r != label]
    regions = [label, *pick([untouched], label, rng)]
    words = [
        EMIT_LOCATION_WORDS[r][int(rng.integers(len(EMIT_LOCATION_WORDS[r])))] for r in regions
    ]
    return [words[0], words[1:]]


def _choice(task: str, row: Mapping, pools: Pools, rng: np.random.Generator) -> list | None:
    """``[correct, distractors]`` of one task for one sample, or None when it is not asked."""
    if task == "anomaly_detection":
        return [EMIT_YES, [EMIT_NO]] if row["is_anomalous"] else [EMIT_NO, [EMIT_YES]]
    if task == "defect_classification":
        return _defect_classification(row, pools, rng)
    if task == "defect_localization":
        return _defect_localization(row, rng)
    g = pool_key(row["dataset"], row["source"])
    correct = emit_name(row["category"])
    distractors = pick((pools.objects_group[g], pools.objects_all), correct, rng)
    return [correct, distractors] if distractors else None


def _check_args(tasks: Sequence[str], styles: Sequence[str]) -> None:
    for kind, given, valid in (("task", tasks, ALL), ("style", styles, STYLES)):
        unknown = [x for x in given if x not in valid]
        if unknown or isinstance(given, str):
            msg = f"unknown {kind}s {unknown or given!r}; expected a list of: {', '.join(valid)}"
            raise QuestionError(msg)


def _rows(samples: pl.DataFrame, annotations: pl.DataFrame | None) -> list[dict]:
    for name, frame, needed in (
        ("samples", samples, SAMPLE_COLUMNS),
        ("annotations", annotations, ANNOTATION_COLUMNS),
    ):
        missing = [c for c in needed if frame is not None and c not in frame.columns]
        if missing:
            msg = (
                f"{name} table: missing columns {missing}; found {frame.columns}; expected the "
                f"{name} table's schema; rebuild it with the current pipeline"
            )
            raise QuestionError(msg)
    if samples["sample_id"].n_unique() != samples.height:
        dup = samples["sample_id"].filter(samples["sample_id"].is_duplicated()).first()
        msg = f"samples table: sample_id {dup!r} appears more than once; expected unique ids"
        raise QuestionError(msg)
    frame = samples.sort("sample_id")
    if annotations is not None:
        ann = annotations.select(ANNOTATION_COLUMNS).rename({"boxes": "gt_boxes"})
        ann = ann.unique("sample_id", keep="first", maintain_order=True)
        frame = frame.join(ann, on="sample_id", how="left", maintain_order="left")
    return frame.to_dicts()


def build_questions(
    samples: pl.DataFrame,
    annotations: pl.DataFrame | None,
    *,
    tasks: Sequence[str] = ALL,
    styles: Sequence[str] = ("emit",),
    seed: int = 0,
    reference_images: Mapping[str, str] | None = None,
    model_max_pixels: int = 512 * 512,
    knowledge_keys: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """The question table of ``samples`` (sorted by sample, then style, then task).

    Args:
        samples: the samples table (``sample_id, dataset, category, label, is_anomalous,
            source``, plus ``image_path, width, height``).
        annotations: the annotations table (``grid_regions, grid_label, localizable, boxes``)
            or None: then no localization questions and no AD-FM boxes.
        tasks: choice tasks to ask in the choice styles (emit, anomalyr1, mmad).
        styles: emit, anomalyr1 (EMIT's questions in AnomalyR1's wrapper), mmad (MMAD's
            layout), lr_iad and adfm (one binary question per sample, ``tasks`` ignored).
        seed: with each question's id, seeds the option order and the distractor draw.
        reference_images: sample_id -> normal template path; others get none.
        model_max_pixels: ``max_pixels`` of the model input AD-FM boxes are mapped to.
        knowledge_keys: dataset key (or MMAD query set) -> name in domain_knowledge.json,
            over :data:`~iad_pipeline.questions.schema.KNOWLEDGE_DATASETS`.

    Every question has 2 to 4 unique options and exactly one of them is correct.

    >>> samples = pl.DataFrame({"sample_id": ["mvtec_ad/bottle/test/good/000"],
    ...     "dataset": ["mvtec_ad"], "category": ["bottle"], "label": ["good"],
    ...     "is_anomalous": [False], "source": ["mvtec_ad"], "image_path": ["/d/000.png"],
    ...     "width": [900], "height": [900]})
    >>> q = build_questions(samples, None)
    >>> q.select("task", "options", "answer").rows()[0]
    ('anomaly_detection', ['Yes.', 'No.'], 'B')
    >>> q.height, q["knowledge_key"][0]
    (2, 'MVTec/bottle')
    """
    _check_args(tasks, styles)
    rows = _rows(samples, annotations)
    pools = Pools.from_rows(rows)
    refs = reference_images or {}
    cols: dict[str, list] = {name: [] for name in QUESTIONS_SCHEMA}
    for row in rows:
        sid = row["sample_id"]
        common = {
            "sample_id": sid,
            "dataset": row["dataset"],
            "category": row["category"],
            "source": row["source"],
            "image_path": row.get("image_path"),
            "reference_image": refs.get(sid),
            "knowledge_key": knowledge_key(
                row["dataset"], row["source"], row["category"], knowledge_keys
            ),
            "split": "",
            "annotation": True,
        }
        for style in styles:
            if style not in CHOICE_STYLES:
                qid = question_id(style, "binary_anomaly", sid)
                built = binary_question(style, row, model_max_pixels)
                _append(cols, common, qid, style, "binary_anomaly", built)
                continue
            for task in tasks:
                qid = question_id(style, task, sid)
                rng = np.random.default_rng([seed, int(qid, 16)])
                made = _choice(task, row, pools, rng)
                if made is None:
                    continue
                options, answer = shuffled(made[0], made[1], rng)
                question = EMIT_QUESTIONS[task].format(options=format_options(options))
                built = {"question": question, "options": options, "answer": answer}
                _append(cols, common, qid, style, task, built)
    return _frame(cols)


def _frame(cols: Mapping[str, list]) -> pl.DataFrame:
    """The table from its columns; list columns that are all empty (boxes and model_hw outside
    AD-FM) are made by repeating one empty list, not by converting thousands of them."""
    n = len(cols["question_id"])
    series = []
    for name, dtype in QUESTIONS_SCHEMA.items():
        values = cols[name]
        if isinstance(dtype, pl.List) and n and not any(values):
            series.append(pl.Series(name, [[]], dtype=dtype).gather(np.zeros(n, np.uint32)))
        else:
            series.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(series)


def _append(cols: dict, common: Mapping, qid: str, style: str, task: str, built: Mapping) -> None:
    record = {
        **common,
        "question_id": qid,
        "style": style,
        "task": task,
        "mmad_type": MMAD_TYPE_OF_TASK[task],
        "boxes": [],
        "model_hw": [],
        "recipe_tags": [],
        **built,
    }
    for name, values in cols.items():
        values.append(record[name])
