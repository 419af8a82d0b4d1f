"""EMIT's domain knowledge, built from a samples table.

**Domain knowledge** (EMIT, "Domain Knowledge Construction"; ``gen_domain_knowledge.py``)
runs in two phases because the normal prompt quotes the defect texts:

1. per (dataset, category, defect label): one request with three images, a similar normal
   image (``references``, else the category's first normal train image), the defect image
   (the first anomalous sample with a mask, by ``sample_id``) and its first mask file,
   under :data:`~iad_pipeline.questions.prompts.EMIT_DEFECT_KNOWLEDGE_PROMPT`;
2. per category: one request with the first normal train image and the category's defect
   texts joined by ``"\\n"`` (:data:`~iad_pipeline.questions.prompts.EMIT_NORMAL_KNOWLEDGE_PROMPT`).

A category without normal train images (MMAD's query sets) uses its first normal image of
another split instead, with a warning.

Every label is kept, VisA's ``bad`` and DAGM's ``defect`` included: a text on what the
dataset's defects look like still helps. Answers are stored as EMIT stores them
(:func:`defect_knowledge_text`, :func:`normal_knowledge_text`). The object and defect names in
the prompts are the folder names, as EMIT passes them.

Columns of the knowledge table (:data:`KNOWLEDGE_SCHEMA`): ``dataset``, ``knowledge_dataset``
(MMAD's name), ``category``, ``key`` (defect label or ``good``), ``text`` (null unless ok),
``status`` (ok / failed / skipped_budget), ``error``, ``provider``, ``model``, ``cached``,
``prompt_tokens``, ``completion_tokens``, ``source_images`` (the images sent, in order).

Text samples are :mod:`~iad_pipeline.knowledge.text_samples`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from iad_pipeline.knowledge.providers import KNOWLEDGE, KnowledgeProvider
from iad_pipeline.knowledge.results import (
    CALL_SCHEMA,
    ChatRequest,
    ChatResult,
    KnowledgeError,
    RunReport,
)
from iad_pipeline.questions.prompts import (
    EMIT_DEFECT_KNOWLEDGE_HEADER,
    EMIT_DEFECT_KNOWLEDGE_PROMPT,
    EMIT_NORMAL_KNOWLEDGE_HEADER,
    EMIT_NORMAL_KNOWLEDGE_PROMPT,
)
from iad_pipeline.questions.schema import KNOWLEDGE_DATASETS

log = logging.getLogger(__name__)

KNOWLEDGE_SCHEMA: dict[str, pl.DataType] = {
    "dataset": pl.String(),
    "knowledge_dataset": pl.String(),
    "category": pl.String(),
    "key": pl.String(),
    "text": pl.String(),
    **CALL_SCHEMA,
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "source_images": pl.List(pl.String()),
}
NEEDED = ("sample_id", "dataset", "category", "split", "label", "is_anomalous", "image_path")


@dataclass(frozen=True)
class KnowledgeResult:
    """The knowledge table, its ok rows in MMAD's json shape, and both phases' report."""

    table: pl.DataFrame
    mmad_json: dict[str, dict[str, dict[str, str]]]
    report: RunReport

    @property
    def failed(self) -> int:
        """Rows whose request failed (or could not be made)."""
        return self.table.filter(pl.col("status") == "failed").height

    def check_not_all_failed(self, where: str) -> None:
        """Raise :class:`KnowledgeError` when no row is ok and at least one failed.

        A run where every request failed produced nothing usable: it must not look like a
        success (the table with the errors is still written, for inspection).
        """
        total, failed = self.table.height, self.failed
        ok = self.table.filter(pl.col("status") == "ok").height
        if ok or not failed:
            return
        errors = self.table.filter(pl.col("status") == "failed")["error"].drop_nulls()
        first = errors[0] if errors.len() else "no error recorded"
        msg = (
            f"{where}: every request failed ({failed} of {total}, {failed / total:.0%}); "
            f"first error: {first}. Check the endpoint (--base-url), the model (--model) and "
            "OPENAI_API_KEY, then run again"
        )
        raise KnowledgeError(msg)


@dataclass(frozen=True)
class _Item:
    """One row to be: where it belongs, and its request (``None``: why not, in ``error``)."""

    dataset: str
    knowledge_dataset: str
    category: str
    key: str
    request: ChatRequest | None
    error: str | None = None


def _one_line(text: str) -> str:
    return text.strip().replace("\r\n", " ").replace("\n", " ")


def defect_knowledge_text(anomaly_type: str, description: str) -> str:
    """A defect text as EMIT stores it: a title line, then the one-line description.

    >>> defect_knowledge_text("broken_large", "A crack.\\nGlass missing.")
    '<Broken Large Defect>\\n Description: A crack. Glass missing.'
    """
    title = anomaly_type.replace("_", " ").title()
    return EMIT_DEFECT_KNOWLEDGE_HEADER.format(title=title) + _one_line(description)


def normal_knowledge_text(description: str) -> str:
    """The normal text as EMIT stores it.

    >>> normal_knowledge_text("Clear glass.\\nRound rim.")
    '<Normal Characteristics>\\n Description: Clear glass. Round rim.'
    """
    return EMIT_NORMAL_KNOWLEDGE_HEADER + _one_line(description)


def check_samples(samples: pl.DataFrame) -> None:
    missing = [c for c in (*NEEDED, "mask_paths") if c not in samples.columns]
    if missing:
        msg = (
            f"samples: missing columns {missing} (found {samples.columns}); expected a samples "
            "table (iad_pipeline.datasets.samples); build it with the samples asset"
        )
        raise KnowledgeError(msg)


def _source_name(row: Mapping[str, Any]) -> str:
    """The dataset as a request key names it: MMAD's own samples by their query set."""
    if row["dataset"] == "mmad" and row.get("source"):
        return str(row["source"])
    return str(row["dataset"])


def _knowledge_dataset(row: Mapping[str, Any]) -> str:
    name = _source_name(row)
    return KNOWLEDGE_DATASETS.get(name, name)


def _first_normal(samples: pl.DataFrame, dataset: str, category: str) -> str | None:
    """The category's first normal train image by ``sample_id``, else its first normal image.

    MMAD's query sets have no train split; their test normals are used then, with a warning
    (a knowledge text that saw an evaluation image is a mild leak).
    """
    normals = samples.filter(
        (pl.col("dataset") == dataset) & (pl.col("category") == category) & ~pl.col("is_anomalous")
    ).sort([pl.col("split") != "train", "sample_id"])
    if not normals.height:
        return None
    if normals["split"][0] != "train":
        log.warning(
            "%s/%s: no normal train image; using %s (split %s)",
            dataset,
            category,
            normals["sample_id"][0],
            normals["split"][0],
        )
    return str(normals["image_path"][0])


def _reference(sample_id: str, references: Mapping[str, Any] | None) -> str | None:
    ref = (references or {}).get(sample_id)
    if isinstance(ref, str | bytes) or ref is None:
        return str(ref) if ref else None
    return str(ref[0]) if len(ref) else None


def _defect_items(samples: pl.DataFrame, references: Mapping[str, Any] | None) -> list[_Item]:
    items = []
    anomalous = samples.filter(pl.col("is_anomalous")).sort("sample_id")
    for (dataset, category, label), group in sorted(
        anomalous.group_by(["dataset", "category", "label"]), key=lambda kv: kv[0]
    ):
        first = group.row(0, named=True)
        where = (dataset, _knowledge_dataset(first), category, label)
        masked = group.filter(pl.col("mask_paths").list.len() > 0)
        if not masked.height:
            items.append(_Item(*where, None, "no anomalous image of this defect has a mask"))
            continue
        row = masked.row(0, named=True)
        ref = _reference(row["sample_id"], references) or _first_normal(samples, dataset, category)
        if ref is None:
            items.append(_Item(*where, None, "no normal image to use as the reference"))
            continue
        mask = str(row["mask_paths"][0])
        text = EMIT_DEFECT_KNOWLEDGE_PROMPT.format(object_name=category, anomaly_type=label)
        key = (KNOWLEDGE, _source_name(row), category, label)
        request = ChatRequest(key, text, (ref, str(row["image_path"]), mask), masks=(mask,))
        items.append(_Item(*where, request))
    return items


def knowledge_requests(
    samples: pl.DataFrame, *, references: Mapping[str, Any] | None = None
) -> list[ChatRequest]:
    """The defect-phase requests: one per (dataset, category, defect label) with a mask.

    Images: the reference (``references[sample_id]``, a path or a list whose first path is
    used, as :func:`~iad_pipeline.questions.templates.retrieve` returns; else the category's
    first normal train image), the defect image, its first mask file (sent binarised).
    Labels with no masked image, or categories with no normal image, get no request (they
    become failed rows in :func:`generate_domain_knowledge`).
    """
    check_samples(samples)
    return [i.request for i in _defect_items(samples, references) if i.request is not None]


def _normal_items(samples: pl.DataFrame, defect_texts: Mapping[tuple[str, str], Sequence[str]]):
    items = []
    firsts = samples.sort("sample_id").unique(["dataset", "category"], keep="first")
    for row in firsts.sort(["dataset", "category"]).iter_rows(named=True):
        dataset, category = row["dataset"], row["category"]
        where = (dataset, _knowledge_dataset(row), category, "good")
        image = _first_normal(samples, dataset, category)
        if image is None:
            items.append(_Item(*where, None, "no normal image to describe"))
            continue
        defects = "\n".join(defect_texts.get((dataset, category), ()))
        text = EMIT_NORMAL_KNOWLEDGE_PROMPT.format(object_name=category, defects=defects)
        request = ChatRequest((KNOWLEDGE, _source_name(row), category, "good"), text, (image,))
        items.append(_Item(*where, request))
    return items


def normal_requests(
    samples: pl.DataFrame, defect_texts: Mapping[tuple[str, str], Sequence[str]]
) -> list[ChatRequest]:
    """The normal-phase requests: one per category, its first normal train image.

    ``defect_texts`` maps ``(dataset, category)`` to the stored defect texts of the category.
    """
    check_samples(samples)
    return [i.request for i in _normal_items(samples, defect_texts) if i.request is not None]


def _rows(
    items: Sequence[_Item], results: Sequence[ChatResult], provider: KnowledgeProvider
) -> list[dict[str, Any]]:
    answered = iter(results)
    rows = []
    for item in items:
        result = next(answered) if item.request is not None else None
        row = {
            "dataset": item.dataset,
            "knowledge_dataset": item.knowledge_dataset,
            "category": item.category,
            "key": item.key,
            "text": None,
            "status": "failed" if result is None else result.status,
            "error": item.error if result is None else result.error,
            "provider": provider.name,
            "model": provider.model,
            "cached": bool(result and result.cached),
            "prompt_tokens": result.prompt_tokens if result else 0,
            "completion_tokens": result.completion_tokens if result else 0,
            "source_images": list(item.request.images) if item.request else [],
        }
        if result is not None and result.status == "ok" and result.text is not None:
            if provider.final_texts:
                row["text"] = result.text
            elif item.key == "good":
                row["text"] = normal_knowledge_text(result.text)
            else:
                row["text"] = defect_knowledge_text(item.key, result.text)
        rows.append(row)
    return rows


def mmad_knowledge_json(table: pl.DataFrame) -> dict[str, dict[str, dict[str, str]]]:
    """The ok rows of a knowledge table as ``{knowledge_dataset: {category: {key: text}}}``.

    >>> t = pl.DataFrame({"knowledge_dataset": ["MVTec", "MVTec"], "category": ["bottle"] * 2,
    ...                   "key": ["crack", "good"], "text": ["c", None],
    ...                   "status": ["ok", "failed"]})
    >>> mmad_knowledge_json(t)
    {'MVTec': {'bottle': {'crack': 'c'}}}
    """
    out: dict[str, dict[str, dict[str, str]]] = {}
    ok = table.filter((pl.col("status") == "ok") & pl.col("text").is_not_null())
    for row in ok.iter_rows(named=True):
        out.setdefault(row["knowledge_dataset"], {}).setdefault(row["category"], {})[row["key"]] = (
            row["text"]
        )
    return out


def generate_domain_knowledge(
    samples: pl.DataFrame,
    provider: KnowledgeProvider,
    *,
    references: Mapping[str, Any] | None = None,
    dataset: str | None = None,
) -> KnowledgeResult:
    """EMIT's domain knowledge of every category in ``samples`` (or of one ``dataset`` key).

    Two phases (see the module docstring); the second counts the first's spending against
    the provider's budget. Rows are ordered per dataset and category, defects by name then
    ``good``; ``mmad_json`` holds only the ok rows.

    Raises:
        KnowledgeError: ``samples`` is not a samples table, or holds no row of ``dataset``.
    """
    check_samples(samples)
    if dataset is not None:
        present = sorted(set(samples["dataset"].unique()))
        samples = samples.filter(pl.col("dataset") == dataset)
        if not samples.height:
            msg = f"samples: no rows of dataset {dataset!r}; found {present}; pass one of them"
            raise KnowledgeError(msg)
    defect_items = _defect_items(samples, references)
    first = provider.complete([i.request for i in defect_items if i.request is not None])
    defect_rows = _rows(defect_items, first.results, provider)
    texts: dict[tuple[str, str], list[str]] = {}
    for row in defect_rows:
        if row["text"] is not None:
            texts.setdefault((row["dataset"], row["category"]), []).append(row["text"])
    normal_items = _normal_items(samples, texts)
    second = provider.complete(
        [i.request for i in normal_items if i.request is not None], spent=first
    )
    rows = defect_rows + _rows(normal_items, second.results, provider)
    table = pl.DataFrame(rows, schema=KNOWLEDGE_SCHEMA)
    table = table.with_columns(_good_last=pl.col("key") == "good")
    table = table.sort(["dataset", "category", "_good_last", "key"]).drop("_good_last")
    report = first.merge(second)
    log.info(
        "domain knowledge: %d texts ok, %d failed, %d skipped (budget) over %d categories",
        table.filter(pl.col("status") == "ok").height,
        table.filter(pl.col("status") == "failed").height,
        table.filter(pl.col("status") == "skipped_budget").height,
        len(normal_items),
    )
    return KnowledgeResult(table, mmad_knowledge_json(table), report)
