"""The ``iad`` command line: the pipeline's core steps for people who work outside the UI.

Every verb has ``--help``; every failure exits non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.errors import IadError
from iad_pipeline.paths import data_dir as default_data_dir


class _Consoles:
    """Rich consoles made on first use, so they see the terminal (and COLUMNS) of the call."""

    @property
    def out(self) -> Console:
        return Console()

    @property
    def err(self) -> Console:
        return Console(stderr=True)


_c = _Consoles()


def _data_dir(value: str | None) -> Path:
    return Path(value).expanduser().resolve() if value else default_data_dir()


def cmd_datasets_list(args: argparse.Namespace) -> int:
    from iad_pipeline.datasets.fetch import read_marker
    from iad_pipeline.datasets.registry import SPECS

    data_dir = _data_dir(args.data_dir)
    table = Table(title=f"Datasets ({data_dir})")
    for column in ("key", "name", "licence", "size", "download", "installed"):
        table.add_column(column)
    for spec in SPECS.values():
        record = read_marker(data_dir, spec.key)
        installed = "no" if record is None else f"yes ({record.mode}"
        if record is not None:
            installed += ", synthetic)" if record.synthetic else ")"
        table.add_row(spec.key, spec.name, spec.licence, spec.size, spec.download_kind, installed)
    _c.out.print(table)
    return 0


def cmd_datasets_fetch(args: argparse.Namespace) -> int:
    from iad_pipeline.datasets.fetch import fetch
    from iad_pipeline.datasets.registry import get_spec

    spec = get_spec(args.key)
    data_dir = _data_dir(args.data_dir)
    _c.err.print(f"{spec.name}: licence {spec.licence} ({spec.homepage})", soft_wrap=True)
    record = fetch(
        args.key,
        data_dir=data_dir,
        url=args.url,
        sha256=args.sha256,
        from_path=Path(args.from_path) if args.from_path else None,
        accept_license=args.accept_license,
        progress=not args.quiet,
        retries=args.retries,
    )
    state = "already installed" if record.already_installed else f"installed ({record.mode})"
    for warning in record.warnings:
        _c.err.print(f"[yellow]warning:[/yellow] {warning}")
    _c.out.print(f"{args.key}: {state} at {record.path}")
    return 0


def cmd_datasets_synth(args: argparse.Namespace) -> int:
    from iad_pipeline.synthetic import pack_archive, synthesize

    target = Path(args.out).expanduser().resolve()
    categories = [c for c in args.categories.split(",") if c] if args.categories else None
    report = synthesize(
        args.key,
        target,
        per_class=args.per_class,
        seed=args.seed,
        size=args.size,
        categories=categories,
        progress=not args.quiet,
    )
    _c.err.print(
        f"{args.key}: {report.n_images} images ({report.n_anomalous} anomalous, "
        f"{report.n_masks} masks) in {target}"
    )
    if args.archive:
        path, digest = pack_archive(args.key, target)
        print(f"{path} {digest}")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from iad_pipeline.datasets.ingest import write_samples

    data_dir = _data_dir(args.data_dir)
    result, paths = write_samples(
        args.key, data_dir, Path(args.out), workers=args.workers, progress=not args.quiet
    )
    table = Table(title=f"{args.key}: {result.samples.height} samples")
    for column in ("split", "label", "images"):
        table.add_column(column)
    counts = result.samples.group_by(["split", "label"]).len("images").sort(["split", "label"])
    for row in counts.iter_rows():
        table.add_row(*(str(v) for v in row))
    _c.out.print(table)
    if result.quarantine.height:
        reasons = result.quarantine.group_by("reason").len("rows").sort("reason")
        summary = ", ".join(f"{r} {n}" for r, n in reasons.iter_rows())
        _c.err.print(
            f"[yellow]quarantine:[/yellow] {result.quarantine.height} rows ({summary}) "
            f"in {paths[1]}"
        )
    else:
        _c.err.print("quarantine: empty")
    _c.out.print(f"wrote {paths[0]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iad",
        description="iad-pipeline: datasets, samples, training and evaluation for "
        "industrial anomaly detection with reasoning VLMs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    ds = verbs.add_parser(
        "datasets",
        help="list, fetch and synthesize datasets",
        description="List, fetch and synthesize datasets.",
    )
    ds_verbs = ds.add_subparsers(dest="ds_verb", required=True, metavar="ACTION")
    data_help = "data folder (default: $IAD_HOME/data, IAD_HOME defaults to ./.iad)"

    p = ds_verbs.add_parser(
        "list",
        help="table of datasets, licences and install state",
        description="Show every dataset of the registry and whether it is installed.",
    )
    p.add_argument("--data-dir", help=data_help)
    p.set_defaults(func=cmd_datasets_list)

    p = ds_verbs.add_parser(
        "fetch",
        help="download (or take --from) and verify a dataset",
        description="Download, verify (sha256) and extract a dataset into "
        "<data-dir>/<KEY>/, or install one you downloaded "
        "with --from.",
    )
    p.add_argument("key", metavar="KEY", choices=DATASET_KEYS, help=", ".join(DATASET_KEYS))
    p.add_argument("--data-dir", help=data_help)
    p.add_argument("--url", help="download from this URL instead (links move)")
    p.add_argument("--sha256", help="expected sha256 of the archive (64 hex digits)")
    p.add_argument(
        "--from",
        dest="from_path",
        metavar="PATH",
        help="a folder or archive you downloaded yourself (read, never modified)",
    )
    p.add_argument(
        "--accept-license",
        action="store_true",
        help="accept a non-commercial or unclear licence (or IAD_ACCEPT_LICENSES=1)",
    )
    p.add_argument("--retries", type=int, default=5, help="download retries (default 5)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_datasets_fetch)

    p = ds_verbs.add_parser(
        "synth",
        help="write a synthetic dataset in KEY's real layout",
        description="Write a synthetic dataset in KEY's real raw on-disk "
        "layout (exact masks). With --archive, also pack it "
        "in the real archive format and print "
        "'<path> <sha256>' as the last line.",
    )
    p.add_argument("key", metavar="KEY", choices=DATASET_KEYS, help=", ".join(DATASET_KEYS))
    p.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    p.add_argument("--per-class", type=int, default=3, help="images per label folder (3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (128)")
    p.add_argument("--categories", help="comma-separated subset of the real categories")
    p.add_argument("--archive", action="store_true", help="also pack the real archive format")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_datasets_synth)

    p = verbs.add_parser(
        "samples",
        help="build the samples and quarantine tables of a dataset",
        description="Read <data-dir>/<KEY>/ and write the samples table "
        "(parquet) and FILE.quarantine.parquet beside it.",
    )
    p.add_argument("key", metavar="KEY", choices=DATASET_KEYS, help=", ".join(DATASET_KEYS))
    p.add_argument("--data-dir", help=data_help)
    p.add_argument("--out", required=True, metavar="FILE.parquet", help="samples table to write")
    p.add_argument(
        "--workers", type=int, default=None, help="reader processes (default: one per core)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_samples)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except IadError as exc:
        _c.err.print(f"iad: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except OSError as exc:
        _c.err.print(f"iad: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        _c.err.print(
            "iad: interrupted; partial downloads are kept and resume on the next run", markup=False
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
