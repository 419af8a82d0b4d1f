"""File paths inside the tables: stored relative to the layout's roots, resolved on reading.

A table stores ``data/visa/candle/Data/Images/Normal/0000.JPG`` rather than the absolute path,
so moving ``$IAD_HOME`` (or copying it to another machine) keeps every table valid. The first
component names the root (``data`` or ``tables`` of the :class:`~iad_pipeline.paths.Layout`).
Reading joins the path onto that root and refuses anything that would leave it (``..``, an
absolute path outside the layout, an unknown root), so a crafted table cannot make the
pipeline read outside its folders.

>>> import polars as pl
>>> from iad_pipeline.paths import Layout
>>> lay = Layout(Path("/h"), "real")
>>> df = pl.DataFrame({"image_path": ["/h/data/visa/a.png"], "mask_paths": [["/h/data/m.png"]]})
>>> stored = relative_paths(df, lay)
>>> stored["image_path"][0], stored["mask_paths"][0].to_list()
('data/visa/a.png', ['data/m.png'])
>>> resolve_paths(stored, Layout(Path("/moved"), "real"))["image_path"][0]
'/moved/data/visa/a.png'
"""

from __future__ import annotations

import posixpath
from pathlib import Path, PurePosixPath

import polars as pl

from iad_pipeline.errors import IadError
from iad_pipeline.paths import Layout

# Columns holding one path, and columns holding a list of paths, in any of the tables.
PATH_COLUMNS = (
    "image_path",
    "reference_image",
    "path",
    "train_image_path",
    "eval_image_path",
    "source_image",
    "rendered_path",
)
LIST_PATH_COLUMNS = ("mask_paths", "source_images")


def _roots(layout: Layout) -> dict[str, str]:
    """``{name: absolute root without trailing slash}``, lexically normalised."""
    return {
        "data": posixpath.normpath(str(layout.data.absolute())),
        "tables": posixpath.normpath(str(layout.tables.absolute())),
    }


def _stored_expr(e: pl.Expr, layout: Layout) -> pl.Expr:
    """Vectorised :func:`to_stored`: a root prefix becomes the root's name."""
    out = e
    for name, root in reversed(list(_roots(layout).items())):
        prefix = root.rstrip("/") + "/"
        out = (
            pl.when(e.str.starts_with(prefix))
            .then(pl.lit(name + "/") + e.str.slice(len(prefix)))
            .otherwise(out)
        )
    return out


def _absolute_expr(e: pl.Expr, layout: Layout) -> pl.Expr:
    """Vectorised :func:`to_absolute` (without the checks, see :func:`_bad_expr`)."""
    out = e
    for name, root in _roots(layout).items():
        out = (
            pl.when(e.str.starts_with(name + "/"))
            .then(pl.lit(root.rstrip("/") + "/") + e.str.slice(len(name) + 1))
            .otherwise(out)
        )
    return out


def _bad_expr(e: pl.Expr, layout: Layout) -> pl.Expr:
    """True for a stored value that would leave the roots: ``..``, unknown root, outside."""
    roots = _roots(layout)
    known = pl.lit(False)
    for name, root in roots.items():
        known = known | e.str.starts_with(name + "/") | e.str.starts_with(root.rstrip("/") + "/")
    dotdot = e.str.contains(r"(^|/)\.\.(/|$)") | e.str.contains("\\", literal=True)
    return e.is_not_null() & (e != "") & (~known | dotdot)


def to_stored(path: str | None, layout: Layout) -> str | None:
    """``root-name/relative`` for a path under one of the roots; other values unchanged."""
    if path is None or path == "" or not Path(path).is_absolute():
        return path
    # lexical, not resolved: a dataset linked in with --from keeps its paths under data/
    normal = posixpath.normpath(path)
    for name, root in _roots(layout).items():
        if normal == root or normal.startswith(root.rstrip("/") + "/"):
            return str(PurePosixPath(name, *PurePosixPath(normal).relative_to(root).parts))
    return path


def to_absolute(value: str | None, layout: Layout, *, source: Path | str = "table") -> str | None:
    """The absolute path of a stored value; refuses anything outside the layout's roots."""
    if value is None or value == "":
        return value
    frame = pl.DataFrame({"v": [value]})
    _check(frame, ["v"], [], layout, source)
    return frame.select(_absolute_expr(pl.col("v"), layout))["v"][0]


def _check(df: pl.DataFrame, columns: list[str], lists: list[str], layout: Layout, source) -> None:
    roots = _roots(layout)
    for column, is_list in [(c, False) for c in columns] + [(c, True) for c in lists]:
        values = df.get_column(column)
        if is_list:
            values = values.explode()
        bad = values.filter(values.to_frame().select(_bad_expr(pl.col(column), layout)).to_series())
        if bad.len():
            msg = (
                f"{source}: {column} {bad[0]!r} is not under the data or tables folder "
                f"({roots['data']}, {roots['tables']}) or leaves it with '..'; rebuild the table"
            )
            raise IadError(msg)


def _columns(df: pl.DataFrame) -> tuple[list[str], list[str]]:
    single = [c for c in PATH_COLUMNS if c in df.columns and df.schema[c] == pl.String]
    lists = [c for c in LIST_PATH_COLUMNS if c in df.columns and df.schema[c] == pl.List(pl.String)]
    return single, lists


def relative_paths(df: pl.DataFrame, layout: Layout) -> pl.DataFrame:
    """The table as stored: path columns relative to the layout's roots."""
    single, lists = _columns(df)
    exprs = [_stored_expr(pl.col(c), layout).alias(c) for c in single]
    exprs += [pl.col(c).list.eval(_stored_expr(pl.element(), layout)).alias(c) for c in lists]
    return df.with_columns(exprs) if exprs else df


def resolve_paths(
    df: pl.DataFrame, layout: Layout, *, source: Path | str = "table"
) -> pl.DataFrame:
    """The table as used: path columns absolute, each checked to stay inside its root."""
    single, lists = _columns(df)
    _check(df, single, lists, layout, source)
    exprs = [_absolute_expr(pl.col(c), layout).alias(c) for c in single]
    exprs += [pl.col(c).list.eval(_absolute_expr(pl.element(), layout)).alias(c) for c in lists]
    return df.with_columns(exprs) if exprs else df


def read_table_file(path: Path, layout: Layout) -> pl.DataFrame:
    """A parquet table written by a stage, with its paths resolved against ``layout``."""
    return resolve_paths(pl.read_parquet(path), layout, source=path)
