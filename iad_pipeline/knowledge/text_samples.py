"""EMIT's text samples: descriptions of normal images, as if defective and as they are.

**Text samples** (EMIT, "Object Descriptive Text as Query Image"; EMIT's Fig. 6 prompts are
not public, so :data:`~iad_pipeline.questions.prompts.TEXT_SAMPLE_DEFECT_PROMPT` and
``TEXT_SAMPLE_NORMAL_PROMPT`` are ours): for ``per_category`` normal *train* images per
category (seeded choice; train only, so no evaluation image leaks into training data), one
description per defect label "as if it had that defect at a location" (a 3x3 region name,
seeded, drawn from the observed grid labels of that defect when given) and one plain
description. Columns (:data:`TEXT_SAMPLES_SCHEMA`): ``text_sample_id`` (16 hex digits of sha1
over dataset, category, source sample, defect and location), ``dataset``, ``category``,
``defect`` and ``location`` (null for a normal description), ``text``, ``source_image``,
``status``, ``error``, ``provider``, ``model``, ``cached``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from iad_pipeline.annotate.grid import REGIONS
from iad_pipeline.knowledge.generate import check_samples
from iad_pipeline.knowledge.providers import TEXT, KnowledgeProvider
from iad_pipeline.knowledge.results import CALL_SCHEMA, ChatRequest, KnowledgeError, RunReport
from iad_pipeline.questions.prompts import TEXT_SAMPLE_DEFECT_PROMPT, TEXT_SAMPLE_NORMAL_PROMPT
from iad_pipeline.settings import KnowledgeSettings

log = logging.getLogger(__name__)

TEXT_SAMPLES_SCHEMA: dict[str, pl.DataType] = {
    "text_sample_id": pl.String(),
    "dataset": pl.String(),
    "category": pl.String(),
    "defect": pl.String(),
    "location": pl.String(),
    "text": pl.String(),
    "source_image": pl.String(),
    **CALL_SCHEMA,
}


@dataclass(frozen=True)
class TextSampleResult:
    """The text-sample table and the provider's report."""

    table: pl.DataFrame
    report: RunReport


def text_sample_id(dataset: str, category: str, sample_id: str, defect: str, location: str) -> str:
    """16 hex digits of sha1 over the five parts.

    >>> text_sample_id("mvtec_ad", "bottle", "mvtec_ad/bottle/train/good/000", "", "")
    'dbf871210b58cf46'
    """
    key = "|".join((dataset, category, sample_id, defect, location))
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def observed_locations(annotations: pl.DataFrame) -> dict[tuple[str, str, str], list[str]]:
    """``{(dataset, category, defect): grid labels}`` of the localizable annotated samples.

    The list keeps repeats, so a seeded choice from it follows the observed frequencies.

    >>> a = pl.DataFrame({"dataset": ["d"] * 3, "category": ["c"] * 3, "label": ["x"] * 3,
    ...                   "grid_label": ["top", "top", None]})
    >>> observed_locations(a)
    {('d', 'c', 'x'): ['top', 'top']}
    """
    out: dict[tuple[str, str, str], list[str]] = {}
    rows = annotations.filter(pl.col("grid_label").is_not_null()).sort(
        ["dataset", "category", "label"], maintain_order=True
    )
    for row in rows.iter_rows(named=True):
        key = (row["dataset"], row["category"], row["label"])
        out.setdefault(key, []).append(row["grid_label"])
    return out


def _text_requests(
    samples: pl.DataFrame,
    per_category: int,
    seed: int,
    locations: Mapping[tuple[str, str, str], Sequence[str]] | None,
) -> list[ChatRequest]:
    requests = []
    for (dataset, category), group in sorted(
        samples.group_by(["dataset", "category"]), key=lambda kv: kv[0]
    ):
        normals = group.filter(~pl.col("is_anomalous") & (pl.col("split") == "train"))
        normals = normals.sort("sample_id")
        if not normals.height:
            log.warning("%s/%s: no normal train image; no text samples", dataset, category)
            continue
        rng = np.random.default_rng([seed, _stable_int(f"{dataset}/{category}")])
        picked = sorted(rng.choice(normals.height, min(per_category, normals.height), False))
        defects = sorted(set(group.filter(pl.col("is_anomalous"))["label"]))
        for index in picked:
            row = normals.row(int(index), named=True)
            sid, image = row["sample_id"], str(row["image_path"])
            for defect in defects:
                seen = list((locations or {}).get((dataset, category, defect)) or ())
                pool = seen or list(REGIONS)
                location = str(pool[int(rng.integers(len(pool)))])
                text = TEXT_SAMPLE_DEFECT_PROMPT.format(
                    object_name=category, anomaly_type=defect, location=location
                )
                key = (TEXT, dataset, category, sid, defect, location)
                requests.append(ChatRequest(key, text, (image,)))
            text = TEXT_SAMPLE_NORMAL_PROMPT.format(object_name=category)
            requests.append(ChatRequest((TEXT, dataset, category, sid, "", ""), text, (image,)))
    return requests


def generate_text_samples(
    samples: pl.DataFrame,
    provider: KnowledgeProvider,
    *,
    per_category: int = KnowledgeSettings.text_samples_per_category,
    seed: int = 0,
    locations: Mapping[tuple[str, str, str], Sequence[str]] | None = None,
) -> TextSampleResult:
    """Descriptions of normal train images, as if defective and as they are (EMIT, Fig. 6).

    Args:
        samples: A samples table.
        provider: Who writes the descriptions.
        per_category: Normal train images per category (EMIT: 5); fewer if fewer exist.
        seed: Seed of the image and location choices (same seed, same requests).
        locations: ``{(dataset, category, defect): region names}`` to draw locations from
            (see :func:`observed_locations`); a defect without an entry draws uniformly
            from the 3x3 regions.

    Raises:
        KnowledgeError: ``samples`` is not a samples table or ``per_category`` < 1.
    """
    check_samples(samples)
    if per_category < 1:
        msg = f"per_category={per_category}: expected at least 1 image per category"
        raise KnowledgeError(msg)
    requests = _text_requests(samples, per_category, seed, locations)
    report = provider.complete(requests)
    rows = []
    for result in report.results:
        _, dataset, category, sid, defect, location = result.request.key
        rows.append(
            {
                "text_sample_id": text_sample_id(dataset, category, sid, defect, location),
                "dataset": dataset,
                "category": category,
                "defect": defect or None,
                "location": location or None,
                "text": result.text if result.status == "ok" else None,
                "source_image": result.request.images[0],
                "status": result.status,
                "error": result.error,
                "provider": provider.name,
                "model": provider.model,
                "cached": result.cached,
            }
        )
    return TextSampleResult(pl.DataFrame(rows, schema=TEXT_SAMPLES_SCHEMA), report)
