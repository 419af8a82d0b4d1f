"""Reports: legible PNGs of the expected size, and our row beside the papers' published rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from eval import figures, published, reports
from eval.published import AVERAGE, DATASET_ROWS, MMAD_ROWS, MMAD_TYPES, MMADRow
from eval.reports import ReportError

# The tables the published rows cite, copied from the papers (see each file's header).
PAPER_TABLES = Path(__file__).parent / "data" / "paper_tables"
MMAD_CATEGORIES = {
    "DS-MVTec": "bottle cable capsule carpet grid hazelnut leather metal_nut pill screw tile "
    "toothbrush transistor wood zipper",
    "MVTec-LOCO": "breakfast_box juice_bottle pushpins screw_bag splicing_connectors",
    "VisA": "candle capsules cashew chewinggum fryum macaroni1 macaroni2 pcb1 pcb2 pcb3 pcb4 "
    "pipe_fryum",
    "GoodsAD": "cigarette_box drink_bottle drink_can food_bottle food_box food_package",
}


def mmad_by_category(run_id: str = "r1", skip: int = 0) -> pl.DataFrame:
    """MMAD's 38 categories x 7 types with spread-out accuracies; ``skip`` cells left out."""
    rows = []
    for dataset, names in MMAD_CATEGORIES.items():
        for category in names.split():
            for t in MMAD_TYPES:
                k = len(rows)
                rows.append((run_id, dataset, category, t, k % 50, 50, 100 * (k % 51) / 50))
    rows = rows[skip:]
    columns = ["run_id", "dataset", "category", "type", "correct", "total", "accuracy"]
    return pl.DataFrame(rows, schema=columns, orient="row")


def mmad_by_type(run_id: str = "r1") -> pl.DataFrame:
    rows = [
        (run_id, dataset, t, 40.0 + 5 * i + j, 100 + j)
        for i, dataset in enumerate([*MMAD_CATEGORIES, AVERAGE])
        for j, t in enumerate([*MMAD_TYPES, AVERAGE])
    ]
    return pl.DataFrame(rows, schema=["run_id", "dataset", "type", "accuracy", "n"], orient="row")


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def colourful(pixels: np.ndarray) -> int:
    """How many distinct colours (coarsely binned) the picture uses."""
    binned = (pixels // 32).reshape(-1, 3)
    return len(np.unique(binned, axis=0))


# --- heatmap ----------------------------------------------------------------------------------


def test_heatmap_of_mmad_is_a_png_of_the_expected_size(tmp_path: Path) -> None:
    out = figures.heatmap(mmad_by_category(), tmp_path / "plots" / "heat.png", "run r1")
    pixels = read_png(out)
    # (2.4 in labels + 8 columns x 1.05 in) x (2.3 in + 38 rows x 0.3 in), at 120 dpi.
    assert pixels.shape == (1644, 1296, 3)
    assert figures.heatmap_size(38, 8) == (1296, 1644)
    assert colourful(pixels) > 20  # a red-to-green scale, not a blank page
    assert [p.name for p in out.parent.iterdir()] == ["heat.png"]  # no temporary left


def test_heatmap_rows_are_readable(tmp_path: Path) -> None:
    # 0.3 in per category at 120 dpi: 36 px per row, room for an 8.5 pt label (about 14 px).
    assert figures.HEATMAP_ROW_IN * figures.DPI >= 30
    small = mmad_by_category().filter(pl.col("dataset") == "MVTec-LOCO")
    pixels = read_png(figures.heatmap(small, tmp_path / "loco.png", "LOCO"))
    assert pixels.shape[:2] == (round((2.3 + 0.3 * 5) * 120), round((2.4 + 1.05 * 8) * 120))


def test_heatmap_draws_missing_cells_and_ignores_an_average_type(tmp_path: Path) -> None:
    frame = mmad_by_category(skip=3)
    extra = frame.head(1).with_columns(type=pl.lit(AVERAGE))
    out = figures.heatmap(pl.concat([frame, extra]), tmp_path / "h.png", "gaps")
    assert read_png(out).shape == (1644, 1296, 3)


def test_heatmap_of_a_single_cell(tmp_path: Path) -> None:
    frame = mmad_by_category().head(1)
    pixels = read_png(figures.heatmap(frame, tmp_path / "one.png", "one"))
    assert pixels.shape[:2] == (round((2.3 + 0.3) * 120), round((2.4 + 1.05 * 2) * 120))


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        pytest.param(
            pl.concat([mmad_by_category("a"), mmad_by_category("b")]), "found 2", id="runs"
        ),
        pytest.param(mmad_by_category().drop("accuracy"), "['accuracy']", id="column"),
        pytest.param(mmad_by_category().head(0), "no scores", id="empty"),
    ],
)
def test_heatmap_rejects_what_it_cannot_draw(tmp_path, frame, expected) -> None:
    with pytest.raises(ReportError, match=re.escape(expected)):
        figures.heatmap(frame, tmp_path / "x.png", "x")
    assert not list(tmp_path.iterdir())


# --- type bars --------------------------------------------------------------------------------


def test_type_bars_by_dataset(tmp_path: Path) -> None:
    pixels = read_png(figures.type_bars(mmad_by_type(), tmp_path / "bars.png", "by dataset"))
    assert pixels.shape == (780, 1560, 3)  # 13 x 6.5 in at 120 dpi
    assert colourful(pixels) > 8


def test_type_bars_next_to_published_rows(tmp_path: Path) -> None:
    rows = [published.mmad_row("Qwen2.5-VL-7B"), published.mmad_row("EMIT-8B")]
    compare = {**published.as_compare(rows), "Qwen2-VL-7B": {AVERAGE: 73.38}}  # average only
    out = figures.type_bars(
        mmad_by_type(), tmp_path / "cmp.png", "ours vs papers", compare, ours_label="ckpt-1"
    )
    assert read_png(out).shape == (780, 1560, 3)


def test_type_bars_of_a_single_dataset_and_type(tmp_path: Path) -> None:
    frame = pl.DataFrame({"dataset": ["MPDD"], "type": ["Anomaly Detection"], "accuracy": [61.5]})
    compare = {"AD-FM-7B (AD-FM, Table 2)": {"Anomaly Detection": 72.71}}
    out = figures.type_bars(frame, tmp_path / "mpdd.png", "MPDD", compare)
    assert read_png(out).shape == (780, 1560, 3)


def test_type_bars_needs_an_average_to_compare_several_datasets(tmp_path: Path) -> None:
    frame = mmad_by_type().filter(pl.col("dataset") != AVERAGE)
    with pytest.raises(ReportError, match="'Average' dataset row"):
        figures.type_bars(frame, tmp_path / "x.png", "x", {"p": {AVERAGE: 1.0}})


# --- comparison table -------------------------------------------------------------------------

OURS = dict(zip(MMAD_TYPES, (80.0, 60.0, 65.0, 70.0, 82.0, 90.0, 85.0), strict=True))


def test_comparison_table_has_our_row_then_every_published_row_with_its_source() -> None:
    table = reports.comparison_table({**OURS, AVERAGE: 76.0}, "ckpt-500")
    assert table.columns == ["model", "source", *MMAD_TYPES, AVERAGE, "setting", "note"]
    assert table.height == 1 + len(MMAD_ROWS)
    assert table.row(0) == ("ckpt-500", "this evaluation", *OURS.values(), 76.0, "", "")
    assert table["source"].null_count() == 0 and (table["source"].str.len_chars() > 0).all()
    qwen = table.filter(pl.col("source").str.starts_with("MMAD")).row(0, named=True)
    assert (qwen["model"], qwen["Defect Classification"], qwen[AVERAGE]) == (
        "Qwen2.5-VL-7B",
        56.02,
        72.19,
    )
    emit = table.filter(pl.col("model") == "EMIT-8B").row(0, named=True)
    assert (emit["source"], emit[AVERAGE]) == ("EMIT, Table 1", 81.95)
    papers = {s.split(",")[0] for s in table["source"].to_list()[1:]}
    assert papers == {"MMAD", "AnomalyR1", "EMIT", "AD-FM"}


@pytest.mark.parametrize(
    ("ours", "expected_average"),
    [
        pytest.param(OURS, 76.0, id="mean of the seven"),  # 532 / 7
        pytest.param({**OURS, AVERAGE: 70.0}, 70.0, id="given average kept"),
        pytest.param({"Anomaly Detection": 80.0}, None, id="partial: no average"),
        pytest.param({}, None, id="empty"),
    ],
)
def test_comparison_table_average(ours, expected_average) -> None:
    row = reports.comparison_table(ours, "x", rows=[]).row(0, named=True)
    assert row[AVERAGE] == pytest.approx(expected_average)


def test_comparison_table_rejects_unknown_types() -> None:
    with pytest.raises(ReportError, match="Object Structure"):
        reports.comparison_table({"Object Structure": 1.0}, "x")


def test_comparison_markdown_and_its_atomic_file(tmp_path: Path) -> None:
    table = reports.comparison_table(OURS, "ckpt-500 ünïcode")
    text = reports.comparison_markdown(table)
    lines = text.splitlines()
    assert lines[0] == "| Model | Source | AD | DC | DL | DD | DA | OC | OA | Avg |"
    assert lines[2] == (
        "| ckpt-500 ünïcode | this evaluation | 80.00 | 60.00 | 65.00 | 70.00 | 82.00 | 90.00 "
        "| 85.00 | 76.00 |"
    )
    assert "| Qwen2-VL-7B | MMAD, released all_result CSVs [1] | - | - |" in text
    assert "- [1] MMAD official 1-shot" in text
    assert "- EMIT-8B (EMIT, Table 1): InternVL3-8B with soft prompt" in text
    out = reports.write_markdown(text, tmp_path / "reports" / "comparison.md")
    assert out.read_text(encoding="utf-8") == text
    assert [p.name for p in out.parent.iterdir()] == ["comparison.md"]


# --- the published rows themselves -------------------------------------------------------------

# Printed averages that disagree with the mean of the printed cells by more than rounding.
KNOWN_AVERAGE_MISMATCH = {("Qwen2.5-VL-3B (SFT)", "AnomalyR1")}


def _rows_with_full_average():
    for row in (*MMAD_ROWS, *DATASET_ROWS):
        complete = len(row.scores) == 7 if isinstance(row, MMADRow) else len(row.scores) > 1
        if complete and row.average is not None:
            yield pytest.param(row, id=published.label(row))


@pytest.mark.parametrize("row", list(_rows_with_full_average()))
def test_published_averages_match_their_cells(row) -> None:
    mean = sum(row.scores.values()) / len(row.scores)
    # Cells and average are each rounded to 0.01: they agree within 0.01.
    agrees = abs(mean - row.average) <= 0.01 + 1e-9
    assert agrees != ((row.model, row.source.paper) in KNOWN_AVERAGE_MISMATCH)


def test_every_published_row_names_a_source_and_a_setting() -> None:
    for row in MMAD_ROWS:
        assert row.source.cite() and row.setting
        assert row.scores or row.average is not None
    for row in DATASET_ROWS:
        assert row.source.cite() and row.protocol and row.metric in {"accuracy", "f1_macro"}


def cited_tables(row) -> str:
    """The text of the tables ``row.source`` cites (``"Tables 1 (AD) and 3"``: 1 and 3)."""
    text = (PAPER_TABLES / row.source.paper_file).read_text(encoding="utf-8")
    # each table starts at its caption, "Table 2." / "Table 1:" / "TABLE IV:"
    parts = re.split(r"^(?:Table|TABLE) ([0-9]+|[IVX]+)[.:]", text, flags=re.MULTILINE)
    tables = dict(zip(parts[1::2], parts[2::2], strict=True))
    wanted = re.findall(r"\b([0-9]+|[IVX]+)\b", row.source.table)
    assert wanted and set(wanted) <= set(tables), (row.source.table, sorted(tables))
    return "\n".join(tables[t] for t in wanted)


@pytest.mark.parametrize(
    "row",
    [r for r in (*MMAD_ROWS, *DATASET_ROWS) if r.source.paper_file],
    ids=lambda r: published.label(r),
)
def test_published_numbers_appear_in_the_cited_table(row) -> None:
    text = cited_tables(row)
    numbers = [*row.scores.values(), *([row.average] if row.average is not None else [])]
    # a number as printed, not part of a longer one (9.32 is not in 59.32)
    missing = [
        f"{v:.2f}"
        for v in numbers
        if not re.search(rf"(?<![0-9.]){re.escape(f'{v:.2f}')}(?![0-9])", text)
    ]
    assert missing == []


def test_unknown_published_model_lists_the_known_ones() -> None:
    with pytest.raises(published.UnknownPublishedRowError, match="EMIT-8B"):
        published.mmad_row("GPT-5")
