"""The held-out learning set: does training move a model's anomaly detection, and from what?

MMAD's synthetic DS-MVTec in the demo holds 30 anomaly-detection questions, 80% of them on
defective images: too few for an interval narrower than the effect, and skewed enough that
"always Yes" looks like learning. The learning set is a separate, larger synthetic draw of
the same categories in MMAD's layout (another seed, so other images), asked with the same
evaluation code:

- anomaly-detection questions only, half on defect-free images and half on defective ones,
  per category (the defective ones a seeded sample over every defect type);
- the answer letter is balanced by the evaluation protocol's seeded option shuffle;
- :func:`write_ablation` copies it with each query image replaced by its normal reference, a
  control a model that reads the image must fall back to chance on.

Its runs carry :data:`LEARNING_EVAL_SET` as their ``eval_set`` in DuckDB, never a benchmark
set's name, so they neither mix with MMAD's scores nor reuse their answers.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from iad_pipeline.errors import IadError
from iad_pipeline.fsutil import write_json

LEARNING_EVAL_SET = "DS-MVTec-learning"
LEARNING_SOURCE = "DS-MVTec"  # the MMAD query set it is drawn like
DEFAULT_CATEGORIES = ("bottle", "screw")  # the demo MMAD's DS-MVTec categories
DEFAULT_SEED = 1  # the demo's MMAD is drawn with seed 0: other images
AD_TYPE = "Anomaly Detection"
MARKER = "learning_set.json"


@dataclass(frozen=True)
class LearningSet:
    """A learning set on disk: ``data`` holds ``mmad/`` (a layout's ``data_override``), and
    ``questions`` its question table (MMAD's columns, absolute image paths)."""

    data: Path
    questions: pl.DataFrame
    params: dict

    @property
    def mmad_root(self) -> Path:
        return self.data / "mmad"


def _params(n: int, categories: Sequence[str], seed: int) -> dict:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2 * len(categories):
        msg = f"learning set: n={n!r}; expected an integer >= {2 * len(categories)}"
        raise IadError(msg)
    if not categories:
        raise IadError("learning set: no categories")
    return {"n": n, "categories": list(categories), "seed": seed, "source": LEARNING_SOURCE}


def write_learning_set(
    data: Path,
    *,
    n: int = 400,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    seed: int = DEFAULT_SEED,
) -> LearningSet:
    """Draw (or reuse, when ``data`` holds the same draw) a learning set of at least ``n``
    anomaly-detection questions, half defect-free, spread evenly over ``categories``.

    >>> import tempfile
    >>> ls = write_learning_set(Path(tempfile.mkdtemp()) / "data", n=8)
    >>> ls.questions.height, sorted(ls.questions["finding"].value_counts()["count"])
    (8, [4, 4])
    """
    from iad_pipeline.synthetic import synthesize

    data = Path(data)
    params = _params(n, categories, seed)
    marker = data / MARKER
    if not (marker.is_file() and json.loads(marker.read_text()) == params):
        shutil.rmtree(data, ignore_errors=True)
        per_category = math.ceil(n / len(categories))
        per_class = math.ceil(per_category / 2)  # good images per category; defects more
        synthesize("mmad", data / "mmad", per_class=per_class, seed=seed, categories=categories)
        write_json(marker, params)
    return LearningSet(data, _questions(data / "mmad", params), params)


def _questions(root: Path, params: dict) -> pl.DataFrame:
    """The balanced anomaly-detection questions of a drawn tree (same draw, same rows)."""
    from iad_pipeline.questions.mmad_json import read_mmad_json

    root = root.absolute()
    questions = read_mmad_json(root / "mmad.json", root).filter(
        (pl.col("mmad_type") == AD_TYPE) & (pl.col("source") == LEARNING_SOURCE)
    )
    # MMAD's detection options are [Yes, No]: the finding is the option the answer names
    finding = pl.col("options").list.get(
        pl.col("answer").str.to_integer(base=36) - 10, null_on_oob=True
    )
    # the draw's identity in every question id: MMAD's ids follow the image path, which
    # another draw (seed, categories) reuses for other pixels; a run's stored answers are
    # found by question id, so a redrawn set is asked again, never scored with old answers
    draw = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    ids = pl.col("question_id").map_elements(
        lambda q: hashlib.sha1(f"{draw}:{q}".encode()).hexdigest()[:16], return_dtype=pl.String
    )
    questions = questions.with_columns(finding.alias("finding"), ids).sort("question_id")
    per_category = math.ceil(params["n"] / len(params["categories"]))
    half = math.ceil(per_category / 2)
    parts = []
    for i, category in enumerate(params["categories"]):
        mine = questions.filter(pl.col("category") == category)
        for j, word in enumerate(("No", "Yes")):
            rows = mine.filter(pl.col("finding") == word)
            if rows.height < half:
                msg = f"learning set: {category} has {rows.height} '{word}' questions, need {half}"
                raise IadError(msg)
            parts.append(rows.sample(half, seed=params["seed"] + 2 * i + j, shuffle=False))
    return pl.concat(parts).sort("question_id")


def write_ablation(learning: LearningSet, data: Path, template: str) -> pl.DataFrame:
    """A copy of ``learning`` under ``data`` whose query images hold their normal reference's
    pixels (``template``: the protocol's ``similar`` or ``random`` template list, the one
    shown beside the query); returns its question table (paths moved to the copy)."""
    from eval.mmad_files import image_key, mmad_templates

    src, dst = learning.mmad_root, Path(data) / "mmad"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(src, dst)
    templates = mmad_templates(src / "mmad.json")
    for path in learning.questions["image_path"].unique():
        key = image_key(path, src)
        refs = (templates.get(key) or {}).get(template) or []
        if not refs:
            msg = f"{src / 'mmad.json'}: {key} names no {template} template"
            raise IadError(msg)
        shutil.copyfile(src / refs[0], dst / key)
    moved = {
        c: pl.col(c).str.replace(str(src.absolute()), str(dst.absolute()), literal=True)
        for c in ("image_path", "reference_image")
    }
    return learning.questions.with_columns(**moved)
