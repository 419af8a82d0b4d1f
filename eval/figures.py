"""Figures of one evaluation: a per-category heatmap and per-type bars.

- :func:`heatmap`: category x type accuracy (%) of one run, every cell annotated, a fixed
  0-100 colour scale so two runs' heatmaps compare at a glance; sized to stay legible for
  MMAD's 38 categories x 7 types.
- :func:`type_bars`: per-type accuracy, per dataset, or next to published rows.

Accuracies are percentages (0-100), as in MMAD's result files. Every file is written to a
temporary name and renamed into place (:mod:`iad_pipeline.fsutil`). Plots use matplotlib's
object API on the Agg canvas (no pyplot state, no display), imported only when drawing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from eval.published import AVERAGE, MMAD_TYPES
from eval.reports import MISSING, ReportError
from iad_pipeline import fsutil

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120
# Heatmap geometry (inches): one row per category, one column per type plus the average.
HEATMAP_ROW_IN = 0.3
HEATMAP_COL_IN = 1.05
HEATMAP_LABELS_IN = 2.4  # category names on the left, dataset names on the right
HEATMAP_EXTRA_IN = 2.3  # title, type headings and the colour bar
BARS_SIZE_IN = (13.0, 6.5)
OURS_COLOUR = "#1f5fa8"
DATASET_COLOURS = ("#4c9bd6", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2")
COMPARE_COLOURS = ("#9c9c9c", "#c9a227", "#8c6d31", "#6b6ecf", "#d6616b", "#5f9e6e")


def heatmap_size(n_categories: int, n_columns: int) -> tuple[int, int]:
    """The heatmap's pixel size (width, height) for a category and column count.

    >>> heatmap_size(38, 8)
    (1296, 1644)
    """
    width = HEATMAP_LABELS_IN + HEATMAP_COL_IN * n_columns
    height = HEATMAP_EXTRA_IN + HEATMAP_ROW_IN * n_categories
    return round(width * DPI), round(height * DPI)


def heatmap(by_category: pl.DataFrame, path: Path | str, title: str) -> Path:
    """Draw one run's per-category x per-type accuracy as an annotated heatmap PNG.

    Rows are the categories grouped by dataset (datasets in first-seen order, categories
    sorted), columns MMAD's types in MMAD's order then any others, and a last ``Average``
    column: the mean over the category's types (MMAD's row average). Missing cells are grey.

    Args:
        by_category: long scores with ``dataset, category, type, accuracy`` (and
            ``run_id``: one run only); a ``type`` of ``Average`` is ignored and recomputed.
        path: the PNG to write (atomically).
        title: the figure title.

    Returns:
        ``path``, sized :func:`heatmap_size` pixels.
    """
    frame = _one_run(by_category, ("dataset", "category", "type", "accuracy"), "heatmap")
    rows, datasets, types, matrix = _category_matrix(frame)
    columns = [*types, AVERAGE]

    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    width, height = heatmap_size(len(rows), len(columns))
    fig = _figure(width / DPI, height / DPI)
    ax = fig.add_subplot()
    cmap = colormaps["RdYlGn"].with_extremes(bad="#d9d9d9")
    norm = Normalize(vmin=0.0, vmax=100.0)
    image = ax.imshow(matrix, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    for i, values in enumerate(matrix):
        for j, value in enumerate(values):
            text = MISSING if math.isnan(value) else f"{value:.1f}"
            colour = "black" if math.isnan(value) else _text_colour(cmap(norm(value)))
            weight = "bold" if columns[j] == AVERAGE else "normal"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour, weight=weight)
    ax.set_xticks(range(len(columns)), [_wrap(t) for t in columns], fontsize=9)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)), [c for _, c in rows], fontsize=8.5)
    ax.tick_params(length=0)
    ax.axvline(len(types) - 0.5, color="white", linewidth=3)
    _label_datasets(fig, ax, rows, datasets)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=12, pad=12)
    bar = fig.colorbar(image, ax=ax, orientation="horizontal", fraction=0.04, pad=0.02, aspect=50)
    bar.set_label("accuracy (%)", fontsize=9)
    bar.ax.tick_params(labelsize=8)
    return _save(fig, path)


def _category_matrix(
    frame: pl.DataFrame,
) -> tuple[list[tuple[str, str]], list[str], list[str], list[list[float]]]:
    """Rows (dataset, category), datasets, types, and accuracies with a last row-mean column."""
    frame = frame.filter(pl.col("type") != AVERAGE)
    types = _ordered_types(frame["type"].unique().to_list())
    datasets = frame["dataset"].unique(maintain_order=True).to_list()
    rows = [
        (dataset, category)
        for dataset in datasets
        for category in sorted(frame.filter(pl.col("dataset") == dataset)["category"].unique())
    ]
    cells = {
        (d, c, t): a
        for d, c, t, a in frame.select("dataset", "category", "type", "accuracy").iter_rows()
    }
    matrix = [[_num(cells.get((d, c, t))) for t in types] for d, c in rows]
    return rows, datasets, types, [[*values, _mean(values)] for values in matrix]


def _label_datasets(fig: Figure, ax: Any, rows: list[tuple[str, str]], datasets: list[str]) -> None:
    """White lines between datasets' blocks of rows, and each dataset's name at the right.

    The names sit on a right-hand axis (so the layout makes room for them), at the middle of
    their block: vertical when the block is tall enough (about 0.09 in per character at
    9 pt), else horizontal.
    """
    middles, start = [], 0
    for dataset in datasets:
        n = sum(1 for d, _ in rows if d == dataset)
        if start:
            ax.axhline(start - 0.5, color="white", linewidth=3)
        middles.append(start + (n - 1) / 2)
        start += n
    # The layout measures these labels in regular weight: pad for the bold rendering.
    fig.get_layout_engine().set(w_pad=0.12, h_pad=0.08)
    right = ax.secondary_yaxis("right")
    right.set_yticks(middles, datasets, fontsize=9, weight="bold")
    right.tick_params(length=0)
    right.spines["right"].set_visible(False)
    for dataset, text in zip(datasets, right.get_yticklabels(), strict=True):
        n = sum(1 for d, _ in rows if d == dataset)
        if len(dataset) * 0.09 <= n * HEATMAP_ROW_IN:
            text.set_rotation(-90)
            text.set_verticalalignment("center")


def type_bars(
    by_type: pl.DataFrame,
    path: Path | str,
    title: str,
    compare: Mapping[str, Mapping[str, float]] | None = None,
    *,
    ours_label: str = "this run",
) -> Path:
    """Draw per-type accuracy bars of one run, by dataset or next to published rows.

    Without ``compare``, one bar per dataset and type (the ``Average`` dataset darkest). With
    ``compare`` (``{label: {type: accuracy}}``, e.g. :func:`eval.published.as_compare`), our
    ``Average`` dataset (or the only dataset) beside each compared row; a type a row does not
    report gets no bar. Types follow MMAD's order, ``Average`` last; each heading shows our
    question count when the frame has ``n``.

    Args:
        by_type: long scores with ``dataset, type, accuracy`` (optional ``n``, ``run_id``:
            one run only).
        path: the PNG to write (atomically), :data:`BARS_SIZE_IN` at :data:`DPI`.
        title: the figure title.
        compare: published (or other) rows to draw beside ours.
        ours_label: the legend label of our bars when comparing.

    Returns:
        ``path``.
    """
    frame = _one_run(by_type, ("dataset", "type", "accuracy"), "type_bars")
    types = _ordered_types(frame["type"].unique().to_list(), average_last=True)
    series, counts = _bar_series(frame, types, compare, ours_label)

    fig = _figure(*BARS_SIZE_IN)
    ax = fig.add_subplot()
    group = 0.82
    width = group / len(series)
    annotate = len(series) <= 6
    for k, (name, heights, colour) in enumerate(series):
        xs = [i - group / 2 + width * (k + 0.5) for i in range(len(types))]
        shown = [(x, h) for x, h in zip(xs, heights, strict=True) if not math.isnan(h)]
        if not shown:
            continue
        bars = ax.bar(
            [x for x, _ in shown], [h for _, h in shown], width * 0.92, label=name, color=colour
        )
        if annotate:
            ax.bar_label(bars, fmt="%.1f", rotation=90, padding=2, fontsize=7.5)
    headings = []
    for t in types:
        n = counts.get(t)
        headings.append(_wrap(t) + (f"\nn={int(n):,}" if n is not None else ""))
    ax.set_xticks(range(len(types)), headings, fontsize=9)
    # At least four type slots wide, so one or two types do not give slab-wide bars.
    pad = max(0.0, (4 - len(types)) / 2)
    ax.set_xlim(-0.5 - pad, len(types) - 0.5 + pad)
    ax.set_ylim(0, 112)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("accuracy (%)")
    ax.yaxis.grid(True, color="#e0e0e0")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=12)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=2 if compare else min(len(series), 5),
        fontsize=8.5,
        frameon=False,
    )
    return _save(fig, path)


def _bar_series(
    frame: pl.DataFrame,
    types: list[str],
    compare: Mapping[str, Mapping[str, float]] | None,
    ours_label: str,
) -> tuple[list[tuple[str, list[float], str]], dict[str, Any]]:
    """The bar series (label, height per type, colour) and our question count per type."""
    datasets = frame["dataset"].unique(maintain_order=True).to_list()
    datasets = [d for d in datasets if d != AVERAGE] + ([AVERAGE] if AVERAGE in datasets else [])
    ours_dataset = AVERAGE if AVERAGE in datasets else datasets[0]
    if compare and len(datasets) > 1 and AVERAGE not in datasets:
        msg = (
            f"type_bars: comparing needs an {AVERAGE!r} dataset row or a single dataset; "
            f"found {datasets}"
        )
        raise ReportError(msg)
    values = {
        (d, t): _num(a) for d, t, a in frame.select("dataset", "type", "accuracy").iter_rows()
    }
    counts: dict[str, Any] = {}
    if "n" in frame.columns:
        rows = frame.select("dataset", "type", "n").iter_rows()
        counts = {t: n for d, t, n in rows if d == ours_dataset}
    series: list[tuple[str, list[float], str]] = []
    if compare:
        ours = [values.get((ours_dataset, t), math.nan) for t in types]
        series.append((ours_label, ours, OURS_COLOUR))
        for k, (name, row) in enumerate(compare.items()):
            colour = COMPARE_COLOURS[k % len(COMPARE_COLOURS)]
            series.append((name, [_num(row.get(t)) for t in types], colour))
        return series, counts
    for k, dataset in enumerate(datasets):
        colour = OURS_COLOUR if dataset == AVERAGE else DATASET_COLOURS[k % len(DATASET_COLOURS)]
        series.append((dataset, [values.get((dataset, t), math.nan) for t in types], colour))
    return series, counts


def _one_run(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> pl.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        msg = f"{what}: missing columns {missing}; found {frame.columns}, expected {list(columns)}"
        raise ReportError(msg)
    if "run_id" in frame.columns and frame["run_id"].n_unique() > 1:
        runs = frame["run_id"].unique().sort().to_list()
        msg = f"{what} draws one run; found {len(runs)}: {runs[:5]}; filter on run_id first"
        raise ReportError(msg)
    if frame.filter(pl.col("type") != AVERAGE).is_empty():
        msg = f"{what}: no scores to draw (the frame has {frame.height} rows, none per type)"
        raise ReportError(msg)
    return frame


def _ordered_types(types: Iterable[str], *, average_last: bool = False) -> list[str]:
    present = set(types)
    ordered = [t for t in MMAD_TYPES if t in present]
    ordered += sorted(present - {*MMAD_TYPES, AVERAGE})
    if average_last and AVERAGE in present:
        ordered.append(AVERAGE)
    return ordered


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _mean(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else math.nan


def _wrap(name: str) -> str:
    """Two-word type names on two lines (``"Defect\\nClassification"``), to keep columns narrow."""
    return name.replace(" ", "\n", 1)


def _text_colour(rgba: tuple[float, float, float, float]) -> str:
    r, g, b, _ = rgba
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path | str) -> Path:
    path = Path(path)
    with fsutil.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path
