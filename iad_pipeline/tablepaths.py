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


def _roots(layout: Layout) -> dict[str, Path]:
    return {"data": layout.data, "tables": layout.tables}


def to_stored(path: str | None, layout: Layout) -> str | None:
    """``root-name/relative`` for a path under one of the roots; other values unchanged."""
    if path is None or path == "" or not Path(path).is_absolute():
        return path
    # lexical, not resolved: a dataset linked in with --from keeps its paths under data/
    normal = Path(posixpath.normpath(path))
    for name, root in _roots(layout).items():
        root = Path(posixpath.normpath(str(root.absolute())))
        if normal.is_relative_to(root):
            return str(PurePosixPath(name, *normal.relative_to(root).parts))
    return path


def to_absolute(value: str | None, layout: Layout, *, source: Path | str = "table") -> str | None:
    """The absolute path of a stored value; refuses anything outside the layout's roots."""
    if value is None or value == "":
        return value
    roots = _roots(layout)
    if Path(value).is_absolute():
        normal = Path(posixpath.normpath(value))
        if any(normal.is_relative_to(posixpath.normpath(str(r))) for r in roots.values()):
            return str(normal)
        msg = (
            f"{source}: path {value!r} lies outside the data and tables folders "
            f"({layout.data}, {layout.tables}); rebuild the table"
        )
        raise IadError(msg)
    parts = PurePosixPath(value).parts
    if len(parts) < 2 or parts[0] not in roots or ".." in parts:
        msg = (
            f"{source}: path {value!r} is not relative to the data or tables folder "
            "(or leaves it with '..'); rebuild the table"
        )
        raise IadError(msg)
    return str(roots[parts[0]].joinpath(*parts[1:]))


def _map(df: pl.DataFrame, fn) -> pl.DataFrame:
    exprs = []
    for column in PATH_COLUMNS:
        if column in df.columns and df.schema[column] == pl.String:
            exprs.append(pl.col(column).map_elements(fn, return_dtype=pl.String))
    for column in LIST_PATH_COLUMNS:
        if column in df.columns and df.schema[column] == pl.List(pl.String):
            exprs.append(
                pl.col(column).map_elements(
                    lambda xs: [fn(x) for x in xs], return_dtype=pl.List(pl.String)
                )
            )
    return df.with_columns(exprs) if exprs and df.height else df


def relative_paths(df: pl.DataFrame, layout: Layout) -> pl.DataFrame:
    """The table as stored: path columns relative to the layout's roots."""
    return _map(df, lambda p: to_stored(p, layout))


def resolve_paths(
    df: pl.DataFrame, layout: Layout, *, source: Path | str = "table"
) -> pl.DataFrame:
    """The table as used: path columns absolute, each checked to stay inside its root."""
    return _map(df, lambda p: to_absolute(p, layout, source=source))


def read_table_file(path: Path, layout: Layout) -> pl.DataFrame:
    """A parquet table written by a stage, with its paths resolved against ``layout``."""
    return resolve_paths(pl.read_parquet(path), layout, source=path)
