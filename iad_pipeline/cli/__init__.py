"""The ``iad`` command: one verb per stage, each the function the matching asset calls.

The core registers its own verbs (:mod:`iad_pipeline.cli.data`,
:mod:`iad_pipeline.cli.knowledge`); the layers above it add theirs through the
``iad_pipeline.cli`` entry-point group (``pyproject.toml``: ``train`` from
:mod:`training.cli`, ``eval`` from :mod:`eval.cli`), so the core never imports them. Each
entry point names a ``register(verbs)`` function that adds its subcommands.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from iad_pipeline.cli import data, knowledge
from iad_pipeline.cli.common import add_profile, consoles
from iad_pipeline.errors import IadError

ENTRY_POINT_GROUP = "iad_pipeline.cli"


def plugin_registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    """The ``register`` functions of the ``iad_pipeline.cli`` entry points, by name."""
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    if not found:
        msg = (
            f"the installed iad-pipeline has no {ENTRY_POINT_GROUP!r} entry points (the "
            "train and eval verbs); the install predates pyproject.toml: run make install "
            "(or pip install -e .)"
        )
        raise IadError(msg)
    return [ep.load() for ep in found]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iad",
        description="iad-pipeline: datasets, samples, training and evaluation for "
        "industrial anomaly detection with reasoning VLMs.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at debug level; tracebacks on errors"
    )
    add_profile(parser, default=None)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    data.register(verbs)
    knowledge.register(verbs)
    for register in plugin_registrars():
        register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except IadError as exc:
        consoles.err.print(f"iad: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except BrokenPipeError:  # `iad datasets list | head -1`: the reader is done, so are we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (IadError, OSError) as exc:
        if args.verbose:  # the traceback is for developers: only with -v
            traceback.print_exc()
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        consoles.err.print(f"iad: error: {message}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        consoles.err.print(
            "iad: interrupted; partial downloads are kept and resume on the next run", markup=False
        )
        return 130
