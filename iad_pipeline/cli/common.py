"""What every ``iad`` verb shares: consoles, the layout of a call, listings, common options.

The verbs of each layer (``iad_pipeline.cli.data``, ``iad_pipeline.cli.knowledge``,
``training.cli``, ``eval.cli``) build on these, so ``--profile``, ``--json`` and the listing
format mean the same everywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.paths import PROFILES, Layout


class Consoles:
    """Rich consoles made on first use, so they see the terminal (and COLUMNS) of the call."""

    @property
    def out(self) -> Console:
        return Console()

    @property
    def err(self) -> Console:
        return Console(stderr=True)


consoles = Consoles()


def say(text: str) -> None:
    """A plain line on stdout: never wrapped or cut, whatever the terminal."""
    print(text, flush=True)


def note(text: str) -> None:
    """A status line on stderr (kept out of a pipe's data)."""
    consoles.err.print(text, soft_wrap=True, highlight=False)


def layout_of(args: argparse.Namespace) -> Layout:
    """The layout of this call: ``$IAD_HOME``, ``--profile`` (``$IAD_PROFILE``), ``--data-dir``."""
    return Layout.resolve(
        None, getattr(args, "profile", None), data_dir=getattr(args, "data_dir", None)
    )


def emit_table(
    args: argparse.Namespace, title: str, columns: Sequence[str], rows: Sequence[Sequence]
) -> None:
    """A listing: JSON with ``--json``, a rich table on a terminal, else plain tab-separated
    lines (header first) that ``grep`` and ``cut`` can read, never truncated."""
    if getattr(args, "json", False):
        print(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str))
        return
    if sys.stdout.isatty():
        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        consoles.out.print(table)
        return
    print("\t".join(columns))
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))
    sys.stdout.flush()


def add_verb(
    verbs: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    summary: str,
    description: str,
    shared: Sequence[Callable[[argparse.ArgumentParser], None]] = (),
) -> argparse.ArgumentParser:
    """Add one verb: ``summary`` is its line in the parent's help, ``description`` its own help;
    ``shared`` are the common options it takes (:func:`add_key`, :func:`add_data_dir`, ...),
    added first; ``func(args)`` runs it. The caller adds the verb's own options to the parser
    this returns."""
    p = verbs.add_parser(name, help=summary, description=description)
    for add in shared:
        add(p)
    p.set_defaults(func=func)
    return p


def add_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("key", metavar="KEY", choices=DATASET_KEYS, help=", ".join(DATASET_KEYS))


def add_profile(p: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    p.add_argument(
        "--profile",
        choices=PROFILES,
        default=default,
        help="demo ($IAD_HOME/demo) or real ($IAD_HOME); default $IAD_PROFILE, else demo",
    )


def add_data_dir(p: argparse.ArgumentParser) -> None:
    add_profile(p)
    p.add_argument(
        "--data-dir",
        help="data folder (default: the profile's data/ under $IAD_HOME, itself ./.iad)",
    )


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the listing as JSON")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
