"""MMAD's files as the evaluation reads them: template lists, domain knowledge, image keys.

:func:`mmad_templates` and :func:`mmad_knowledge` read ``mmad.json`` and
``domain_knowledge.json`` into the mappings :func:`eval.prompting.build_prompt` takes;
:func:`image_key` and :func:`question_type` give a question row's MMAD key and raw type,
by which templates, errata and scores are looked up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iad_pipeline.datasets.mmad import load_mmad_json
from iad_pipeline.knowledge.providers import MmadKnowledge
from iad_pipeline.questions.mmad_json import RAW_TYPE_TAG


def question_type(row: Mapping[str, Any]) -> str:
    """MMAD's raw type of a question row: its ``raw_type:`` tag, else its ``mmad_type``.

    >>> question_type({"recipe_tags": ["raw_type:Object Details"], "mmad_type": "Object Analysis"})
    'Object Details'
    >>> question_type({"recipe_tags": [], "mmad_type": "Anomaly Detection"})
    'Anomaly Detection'
    """
    for tag in row.get("recipe_tags") or ():
        if tag.startswith(RAW_TYPE_TAG):
            return tag[len(RAW_TYPE_TAG) :]
    return str(row.get("mmad_type") or "")


def image_key(path: str | Path, image_root: Path | str | None) -> str:
    """MMAD's key of an image: its path relative to ``image_root`` (as given when outside it).

    >>> image_key("/data/mmad/VisA/candle/test/bad/002.JPG", "/data/mmad")
    'VisA/candle/test/bad/002.JPG'
    >>> image_key("VisA/candle/test/bad/002.JPG", "/data/mmad")
    'VisA/candle/test/bad/002.JPG'
    """
    p = Path(path)
    if image_root is not None and p.is_absolute():
        try:
            return p.relative_to(Path(image_root)).as_posix()
        except ValueError:
            pass
    return p.as_posix()


def resolve(path: str | Path, image_root: Path | str | None) -> Path:
    """``path`` under ``image_root`` when relative (as given when absolute or without a root)."""
    p = Path(path)
    return p if p.is_absolute() or image_root is None else Path(image_root) / p


def mmad_templates(mmad_json_path: Path | str) -> dict[str, dict[str, list[str]]]:
    """Template lists of every query image of an mmad.json, by MMAD key.

    Returns ``{key: {"similar": similar_templates, "random": random_templates}}``; the paths
    stay relative to the data root, as in the file.
    """
    out: dict[str, dict[str, list[str]]] = {}
    for key, entry in load_mmad_json(Path(mmad_json_path)).items():
        if not isinstance(entry, dict):
            continue  # read_mmad_json reports malformed entries; here they just have no templates
        out[key] = {
            "similar": [str(p) for p in entry.get("similar_templates") or []],
            "random": [str(p) for p in entry.get("random_templates") or []],
        }
    return out


def mmad_knowledge(domain_knowledge_path: Path | str) -> dict[str, str]:
    """MMAD's ``domain_knowledge.json`` as ``{knowledge_key: text}``.

    The text is MMAD's: the category's entries in file order joined by newlines
    (``'\\n'.join(dk[dataset][cls].values())``); the key is ``<dataset>/<category>``, the
    question table's ``knowledge_key`` (``"MVTec/bottle"``).
    """
    data = MmadKnowledge(domain_knowledge_path).data
    return {
        f"{dataset}/{category}": "\n".join(entry.values())
        for dataset, categories in data.items()
        for category, entry in categories.items()
    }
