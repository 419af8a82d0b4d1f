"""The question table as a Hugging Face dataset for TRL's GRPO trainer, and its atomic save.

Columns of :func:`to_hf_dataset`:

- ``prompt``: TRL's conversational form, ``[{"role": "user", "content": text}]`` with the text
  of :func:`~iad_pipeline.questions.prompts.render_prompt` (``<image>`` markers included; a
  trainer splits them with :func:`~iad_pipeline.questions.prompts.to_content`)
- ``image``: the query image (``datasets.Image``)
- ``reference_image``: the normal template when the prompt shows it, else None; the prompt's
  markers are always template first, then query
  (:func:`~iad_pipeline.questions.prompts.prompt_images`)
- ``solution``: the answer letter; ``boxes``: AD-FM boxes ``[x1, y1, x2, y2]`` (model pixels)
- ``question_id``, ``task``, ``style``, ``sample_id``
- ``question``: the question with its options as the prompt shows them (the recipe's
  ``prompt: question`` form asks with this alone)

:meth:`datasets.Dataset.save_to_disk` embeds the image bytes, so a saved dataset stands alone.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
import polars as pl

from iad_pipeline.fsutil import temp_sibling
from iad_pipeline.questions.prompts import prompt_images, render_prompt
from iad_pipeline.questions.schema import QuestionError

FEATURES = datasets.Features(
    {
        "prompt": datasets.List(
            {"role": datasets.Value("string"), "content": datasets.Value("string")}
        ),
        "image": datasets.Image(),
        "reference_image": datasets.Image(),
        "solution": datasets.Value("string"),
        "boxes": datasets.List(datasets.List(datasets.Value("int32"))),
        "question_id": datasets.Value("string"),
        "task": datasets.Value("string"),
        "style": datasets.Value("string"),
        "sample_id": datasets.Value("string"),
        "question": datasets.Value("string"),
    }
)


def _resolve(path: str, image_root: Path | None) -> str:
    p = Path(path)
    return str(image_root / p) if image_root is not None and not p.is_absolute() else str(p)


def join_knowledge(
    entries: str | Sequence[str] | None, *, shuffle_seed: int | None = None, key: str = ""
) -> str | None:
    """A question's domain-knowledge text: its entries joined by newlines.

    With ``shuffle_seed`` the entries are shuffled first, per question (``key``: its id), as
    EMIT's ``random_join`` does for every training question (guanwei49/EMIT 01dc319,
    traindata_gen/make_jonsl.py); the shuffle is seeded, so an export is reproducible.

    >>> print(join_knowledge(["a", "b", "c"]))
    a
    b
    c
    >>> sorted(join_knowledge(["a", "b", "c"], shuffle_seed=0, key="q1").split())
    ['a', 'b', 'c']
    """
    if entries is None or isinstance(entries, str):
        return entries
    entries = list(entries)
    if shuffle_seed is not None:
        random.Random(f"{shuffle_seed}:{key}").shuffle(entries)
    return "\n".join(entries)


def to_hf_dataset(
    questions: pl.DataFrame,
    *,
    image_root: Path | None = None,
    knowledge: Mapping[str, str | Sequence[str]] | None = None,
    shuffle_knowledge_seed: int | None = None,
) -> datasets.Dataset:
    """A ``datasets.Dataset`` of the questions, one row each (columns in the module docstring).

    Relative image paths are resolved against ``image_root``; ``knowledge`` maps
    ``knowledge_key`` to its domain-knowledge text, or to its entries, for the prompts that
    carry it; entries are joined in order, or shuffled per question with
    ``shuffle_knowledge_seed`` (EMIT's training data, :func:`join_knowledge`). Every image
    must exist: a missing one raises :class:`QuestionError` naming it.
    """
    knowledge = knowledge or {}
    cols: dict[str, list] = {name: [] for name in FEATURES}
    for row in questions.iter_rows(named=True):
        text = render_prompt(
            row,
            knowledge=join_knowledge(
                knowledge.get(row["knowledge_key"]),
                shuffle_seed=shuffle_knowledge_seed,
                key=str(row["question_id"]),
            ),
        )
        shown = [_resolve(p, image_root) for p in prompt_images(row)]
        cols["prompt"].append([{"role": "user", "content": text}])
        cols["image"].append(shown[-1])
        cols["reference_image"].append(shown[0] if len(shown) > 1 else None)
        cols["solution"].append(row["answer"])
        cols["boxes"].append(row["boxes"] or [])
        for name in ("question_id", "task", "style", "sample_id", "question"):
            cols[name].append(row[name])
    paths = {p for name in ("image", "reference_image") for p in cols[name] if p is not None}
    missing = sorted(p for p in paths if not os.path.isfile(p))
    if missing:
        msg = (
            f"{len(missing)} images of the questions are missing (first: {missing[0]}); expected "
            "every image_path and reference_image to exist; pass image_root for relative paths"
        )
        raise QuestionError(msg)
    return datasets.Dataset.from_dict(cols, features=FEATURES)


def save_hf_dataset(ds: datasets.Dataset, out_dir: Path) -> Path:
    """Save ``ds`` to ``out_dir`` via a temporary folder renamed into place.

    A reader sees the old dataset or the new one, never half of one; an earlier dataset at
    ``out_dir`` is replaced.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out_dir)
    try:
        ds.save_to_disk(str(tmp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out_dir.exists():
        old = temp_sibling(out_dir, ".old")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir
