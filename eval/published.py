"""Published results of the papers this project reproduces, as data, each with its source.

Every number here was read from a table of a paper (the cited tables are kept verbatim in
``tests/eval/data/paper_tables/``, which a test checks every number against) or from MMAD's
released result files; none is computed or rounded by us.
A cell the source does not print is absent (never 0). Rows are comparable with ours only
under the same protocol, so each names its setting, and the notes say where a protocol
departs from MMAD's official one (template choice, domain knowledge, a held-out split).

Pages: the text extractions carry no page breaks, so ``page`` is ``None`` except where the
paper's reference back-links place a table (AnomalyR1's Table 2 and Table 4).

Two kinds of rows:

- :data:`MMAD_ROWS`: MMAD's seven reported types (accuracy %, the Anomaly Detection cell
  being MMAD's balanced accuracy) and the seven-type average as printed.
- :data:`DATASET_ROWS`: one binary anomaly-detection number per dataset (AD-FM's
  multi-domain and cross-dataset protocols, LR-IAD's zero-shot tables, AnomalyR1's per-dataset
  anomaly-discrimination ablation and its MVTec 3D-AD table).

>>> row = mmad_row("EMIT-8B")
>>> row.scores["Defect Localization"], row.average, row.source.cite()
(76.39, 81.95, 'EMIT, Table 1')
>>> sorted({r.source.paper for r in MMAD_ROWS})
['AD-FM', 'AnomalyR1', 'EMIT', 'MMAD']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from iad_pipeline.errors import IadError
from iad_pipeline.questions.prompts import MMAD_REPORTED_TYPES

MMAD_TYPES = MMAD_REPORTED_TYPES
AVERAGE = "Average"
KINDS = ("reference", "proprietary", "base", "fine-tuned", "clip-based")


class UnknownPublishedRowError(IadError, KeyError):
    """A published row was asked for by a model name that no row has."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Source:
    """Where a row was printed: the paper (or result file), its table, and the page if known."""

    paper: str
    table: str
    page: int | None = None
    # The paper's file under tests/eval/data/paper_tables/ holding the cited table (None: not a
    # paper).
    paper_file: str | None = None

    def cite(self) -> str:
        """A short citation, e.g. ``"AnomalyR1, Table 2, p. 8"``."""
        page = f", p. {self.page}" if self.page is not None else ""
        return f"{self.paper}, {self.table}{page}"


def _frozen(values: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class MMADRow:
    """One model's published MMAD accuracies (%), by reported type."""

    model: str
    kind: str
    scores: Mapping[str, float]
    average: float | None
    setting: str
    source: Source
    note: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.scores) - set(MMAD_TYPES)
        if unknown or self.kind not in KINDS:
            msg = (
                f"published row {self.model!r}: types {sorted(unknown)} / kind {self.kind!r} "
                f"are not MMAD types {list(MMAD_TYPES)} / one of {list(KINDS)}"
            )
            raise ValueError(msg)
        object.__setattr__(self, "scores", _frozen(self.scores))


@dataclass(frozen=True)
class DatasetRow:
    """One model's published binary anomaly-detection metric (%), by dataset."""

    model: str
    kind: str
    metric: str  # "accuracy" or "f1_macro"
    protocol: str
    scores: Mapping[str, float]
    average: float | None
    source: Source
    note: str = ""
    shots: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", _frozen(self.scores))


def _mmad(values: Iterable[float]) -> dict[str, float]:
    """The seven cells in MMAD's column order (the order every paper prints them in)."""
    return dict(zip(MMAD_TYPES, values, strict=True))


_MMAD_CSV = Source("MMAD", "released all_result CSVs")
_ANOMALYR1_T2 = Source("AnomalyR1", "Table 2", page=8, paper_file="anomalyr1.txt")
_EMIT_T1 = Source("EMIT", "Table 1", paper_file="emit.txt")
_ADFM_T1_T3 = Source("AD-FM", "Tables 1 (AD) and 3", paper_file="ad-fm.txt")

_MMAD_OFFICIAL = "MMAD official 1-shot (random normal template, MMAD prompt, greedy)"
_ANOMALYR1_SETTING = "MMAD 1-shot in-context learning, as tabulated by AnomalyR1"
_EMIT_SETTING = (
    "EMIT one-shot: most similar normal template (CLIP), domain knowledge for defect "
    "questions, none for object questions"
)
_ADFM_SETTING = (
    "AD-FM multi-domain: trained on 20% of MVTec, VisA, MVTec-LOCO, GoodsAD per category, "
    "evaluated on the other 80%; average over the four datasets"
)
_ADFM_NO_AVERAGE = (
    "Anomaly Detection is Table 1's binary accuracy; Table 3 prints no seven-type average"
)

MMAD_ROWS: tuple[MMADRow, ...] = (
    # --- MMAD's released result files (reference: shared/reference/mmad-and-papers-code.md §1)
    MMADRow(
        "Qwen2.5-VL-7B",
        "base",
        _mmad((71.10, 56.02, 60.69, 64.13, 78.26, 91.49, 83.67)),
        72.19,
        _MMAD_OFFICIAL,
        _MMAD_CSV,
    ),
    MMADRow("Qwen2-VL-7B", "base", {}, 73.38, _MMAD_OFFICIAL, _MMAD_CSV),
    MMADRow("Qwen2.5-VL-72B-AWQ", "base", {}, 76.96, _MMAD_OFFICIAL, _MMAD_CSV),
    MMADRow("GPT-4o", "proprietary", {}, 74.31, _MMAD_OFFICIAL, _MMAD_CSV),
    # --- AnomalyR1, Table 2 (MMAD's baselines reprinted, plus its own rows)
    MMADRow(
        "Random chance",
        "reference",
        _mmad((50.00, 25.00, 25.00, 25.00, 25.00, 25.00, 25.00)),
        28.57,
        _ANOMALYR1_SETTING,
        _ANOMALYR1_T2,
    ),
    MMADRow(
        "Human (expert)",
        "reference",
        _mmad((95.24, 75.00, 92.31, 83.33, 94.20, 86.11, 80.37)),
        86.65,
        _ANOMALYR1_SETTING,
        _ANOMALYR1_T2,
    ),
    MMADRow(
        "GPT-4o",
        "proprietary",
        _mmad((68.63, 65.80, 55.62, 73.21, 83.41, 94.98, 82.80)),
        74.92,
        _ANOMALYR1_SETTING,
        _ANOMALYR1_T2,
        note="differs from MMAD's released CSV average (74.31)",
    ),
    MMADRow(
        "Qwen2.5-VL-3B",
        "base",
        _mmad((51.10, 41.07, 44.87, 61.43, 75.99, 86.54, 79.58)),
        62.94,
        _ANOMALYR1_SETTING,
        _ANOMALYR1_T2,
    ),
    MMADRow(
        "Qwen2.5-VL-3B (SFT)",
        "fine-tuned",
        _mmad((53.36, 41.51, 49.73, 62.84, 75.58, 86.39, 79.58)),
        64.13,
        _ANOMALYR1_SETTING,
        _ANOMALYR1_T2,
        note="as printed; the mean of the printed cells is 64.14",
    ),
    MMADRow(
        "AnomalyR1-3B",
        "fine-tuned",
        _mmad((60.62, 63.56, 70.14, 80.47, 85.28, 92.48, 86.15)),
        76.96,
        _ANOMALYR1_SETTING,
        _ANOMALYR1_T2,
        note="its released eval/thinkad_query.py passes no template image (effectively 0-shot)",
    ),
    # --- EMIT, Table 1 (one-shot, similar template + domain knowledge)
    MMADRow(
        "Qwen2.5-VL-7B",
        "base",
        _mmad((64.42, 69.35, 61.49, 74.65, 81.57, 92.46, 85.96)),
        75.70,
        _EMIT_SETTING,
        _EMIT_T1,
    ),
    MMADRow(
        "GLM-4.1V-Thinking-9B",
        "base",
        _mmad((72.31, 72.01, 66.47, 79.98, 84.61, 93.79, 83.26)),
        78.92,
        _EMIT_SETTING,
        _EMIT_T1,
        note="EMIT's best open-source baseline",
    ),
    MMADRow(
        "AnomalyR1-3B",
        "fine-tuned",
        _mmad((53.47, 69.95, 64.99, 77.27, 81.89, 89.71, 85.19)),
        74.64,
        _EMIT_SETTING,
        _EMIT_T1,
        note="the authors' released weights, evaluated by EMIT",
    ),
    MMADRow(
        "InternVL3-8B",
        "base",
        _mmad((66.71, 69.16, 58.01, 75.33, 81.06, 85.68, 83.28)),
        74.18,
        _EMIT_SETTING,
        _EMIT_T1,
    ),
    MMADRow(
        "InternVL3-8B (SFT)",
        "fine-tuned",
        _mmad((68.59, 73.59, 72.42, 76.00, 81.65, 84.71, 81.52)),
        76.92,
        _EMIT_SETTING,
        _EMIT_T1,
    ),
    MMADRow(
        "InternVL3-8B (GRPO)",
        "fine-tuned",
        _mmad((71.44, 75.07, 74.51, 78.72, 84.73, 86.32, 83.35)),
        79.16,
        _EMIT_SETTING,
        _EMIT_T1,
        note="plain GRPO in place of EMIT's difficulty-aware GRPO",
    ),
    MMADRow(
        "EMIT-8B",
        "fine-tuned",
        _mmad((73.87, 80.85, 76.39, 83.00, 85.92, 90.26, 83.37)),
        81.95,
        _EMIT_SETTING,
        _EMIT_T1,
        note="InternVL3-8B with soft prompt, contrastive embeddings and difficulty-aware GRPO",
    ),
    # --- AD-FM: Anomaly Detection from Table 1, the other six types from Table 3
    MMADRow(
        "Qwen2.5-VL-7B",
        "base",
        _mmad((51.04, 41.07, 44.87, 61.43, 75.99, 86.54, 79.58)),
        None,
        _ADFM_SETTING,
        _ADFM_T1_T3,
        note=(
            f"{_ADFM_NO_AVERAGE} (six-type average 64.91); the six values equal AnomalyR1 "
            "Table 2's Qwen2.5-VL-3B row digit for digit"
        ),
    ),
    MMADRow(
        "InternVL3-8B",
        "base",
        _mmad((63.38, 46.35, 46.24, 66.01, 78.28, 79.17, 84.83)),
        None,
        _ADFM_SETTING,
        _ADFM_T1_T3,
        note=f"{_ADFM_NO_AVERAGE} (six-type average 66.81)",
    ),
    MMADRow(
        "GPT-4.1",
        "proprietary",
        _mmad((71.60, 65.93, 62.64, 76.18, 84.23, 90.95, 85.57)),
        None,
        _ADFM_SETTING,
        _ADFM_T1_T3,
        note=f"{_ADFM_NO_AVERAGE} (six-type average 77.58)",
    ),
    MMADRow(
        "OmniAD-7B",
        "fine-tuned",
        _mmad((68.80, 78.80, 75.50, 67.20, 86.40, 96.00, 86.40)),
        None,
        _ADFM_SETTING,
        _ADFM_T1_T3,
        note=(
            f"{_ADFM_NO_AVERAGE} (six-type average 81.72); AD-FM reprints OmniAD's own "
            "published numbers, not its protocol"
        ),
    ),
    MMADRow(
        "AD-FM-7B",
        "fine-tuned",
        _mmad((73.15, 73.36, 77.53, 86.80, 86.75, 89.98, 86.67)),
        None,
        _ADFM_SETTING,
        _ADFM_T1_T3,
        note=f"{_ADFM_NO_AVERAGE} (six-type average 83.56)",
    ),
)

_ADFM_T1 = Source("AD-FM", "Table 1", paper_file="ad-fm.txt")
_ADFM_T2 = Source("AD-FM", "Table 2", paper_file="ad-fm.txt")
_LRIAD_T4 = Source("LR-IAD", "Table IV", paper_file="lr-iad.txt")
_ANOMALYR1_T4 = Source("AnomalyR1", "Table 4", page=9, paper_file="anomalyr1.txt")
_ANOMALYR1_T5 = Source("AnomalyR1", "Table 5", paper_file="anomalyr1.txt")

_MULTI_DOMAIN = "AD-FM multi-domain (20% train / 80% test per category)"
_MULTI_DOMAIN_SETS = ("MVTec", "VisA", "MVTec-LOCO", "GoodsAD")
_CROSS = "AD-FM cross-dataset (trained on 20% of MVTec only), single normal reference"
_CROSS_SETS = ("VisA", "MPDD", "DTD", "DAGM")
_LRIAD = "LR-IAD zero-shot, whole datasets"
_ROAM = "AnomalyR1 ablation: MMAD anomaly discrimination after 1000 GRPO steps"
_ROAM_SETS = ("DS-MVTec", "MVTec-LOCO", "VisA", "GoodsAD")


def _sets(names: tuple[str, ...], values: Iterable[float]) -> dict[str, float]:
    return dict(zip(names, values, strict=True))


DATASET_ROWS: tuple[DatasetRow, ...] = (
    # --- AD-FM Table 1: binary accuracy, multi-domain
    *(
        DatasetRow(
            model, kind, "accuracy", _MULTI_DOMAIN, _sets(_MULTI_DOMAIN_SETS, v), avg, _ADFM_T1
        )
        for model, kind, v, avg in (
            ("Qwen2.5-VL-7B", "base", (62.03, 55.50, 45.90, 40.73), 51.04),
            ("InternVL3-8B", "base", (78.53, 65.02, 59.77, 50.20), 63.38),
            ("GPT-4.1", "proprietary", (78.83, 80.99, 69.35, 57.21), 71.60),
            ("AD-FM-7B", "fine-tuned", (90.72, 79.52, 65.62, 56.74), 73.15),
        )
    ),
    # --- AD-FM Table 2: binary accuracy, cross-dataset generalisation
    *(
        DatasetRow(model, kind, "accuracy", _CROSS, _sets(_CROSS_SETS, v), avg, _ADFM_T2, note)
        for model, kind, v, avg, note in (
            ("Qwen2.5-VL-7B", "base", (55.50, 68.34, 85.59, 94.83), 76.07, ""),
            ("InternVL3-8B", "base", (65.02, 70.74, 85.05, 81.33), 75.54, ""),
            ("GPT-4o", "proprietary", (73.77, 69.43, 90.80, 90.17), 81.04, ""),
            (
                "AnomalyCLIP",
                "clip-based",
                (82.17, 68.23, 88.91, 95.36),
                83.67,
                "threshold chosen by Youden's J on the test set",
            ),
            ("AD-FM-7B", "fine-tuned", (77.43, 72.71, 92.64, 95.51), 84.57, ""),
        )
    ),
    # --- LR-IAD Table IV: zero-shot accuracy and F1-macro on MVTec-AD and VisA
    *(
        DatasetRow(
            model, kind, metric, _LRIAD, _sets(("MVTec-AD", "VisA"), v), None, _LRIAD_T4, shots=0
        )
        for model, kind, metric, v in (
            ("Qwen2-VL-7B", "base", "accuracy", (69.84, 70.80)),
            ("Qwen2-VL-7B", "base", "f1_macro", (30.88, 20.56)),
            ("LR-IAD-7B", "fine-tuned", "accuracy", (84.35, 87.60)),
            ("LR-IAD-7B", "fine-tuned", "f1_macro", (71.54, 59.54)),
        )
    ),
    # --- AnomalyR1 Table 5: anomaly discrimination per MMAD dataset (ROAM ablation)
    *(
        DatasetRow(model, kind, "accuracy", _ROAM, _sets(_ROAM_SETS, v), avg, _ANOMALYR1_T5)
        for model, kind, v, avg in (
            ("Qwen2.5-VL-3B", "base", (52.74, 50.05, 51.44, 50.16), 51.10),
            ("Qwen2.5-VL-3B (GRPO)", "fine-tuned", (60.11, 49.96, 49.95, 50.55), 52.64),
            ("Qwen2.5-VL-3B (GRPO + ROAM)", "fine-tuned", (65.07, 56.30, 69.03, 52.08), 60.62),
        )
    ),
    # --- AnomalyR1 Table 4: MVTec 3D-AD (RGB), zero-shot; the category average only
    *(
        DatasetRow(
            model,
            kind,
            "accuracy",
            "AnomalyR1 zero-shot anomaly understanding on MVTec 3D-AD (RGB)",
            {"MVTec 3D-AD": value},
            None,
            _ANOMALYR1_T4,
            "mean over the ten categories, as printed",
            shots=0,
        )
        for model, kind, value in (
            ("Qwen2.5-VL-3B", "base", 52.11),
            ("AnomalyR1-3B", "fine-tuned", 56.85),
        )
    ),
)


def mmad_row(model: str, paper: str | None = None) -> MMADRow:
    """The first MMAD row of ``model`` (optionally from ``paper``), in :data:`MMAD_ROWS` order.

    >>> mmad_row("Qwen2.5-VL-7B").source.paper, mmad_row("Qwen2.5-VL-7B", "EMIT").average
    ('MMAD', 75.7)
    """
    for row in MMAD_ROWS:
        if row.model == model and (paper is None or row.source.paper == paper):
            return row
    known = sorted({f"{r.model} ({r.source.paper})" for r in MMAD_ROWS})
    msg = f"no published MMAD row for model {model!r} paper {paper!r}; known: {known}"
    raise UnknownPublishedRowError(msg)


def label(row: MMADRow | DatasetRow) -> str:
    """A legend label naming model and source, e.g. ``"EMIT-8B (EMIT, Table 1)"``."""
    return f"{row.model} ({row.source.cite()})"


def as_compare(rows: Iterable[MMADRow]) -> dict[str, dict[str, float]]:
    """Rows as ``{label: {type: accuracy}}`` (average included), the shape plots compare with.

    >>> as_compare([mmad_row("GPT-4o")])
    {'GPT-4o (MMAD, released all_result CSVs)': {'Average': 74.31}}
    """
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        values = dict(row.scores)
        if row.average is not None:
            values[AVERAGE] = row.average
        out[label(row)] = values
    return out
