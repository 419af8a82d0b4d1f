"""``iad datasets``, ``iad samples``, ``iad annotate``, ``iad questions``: the data stages."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from iad_pipeline.cli.common import (
    add_data_dir,
    add_json,
    add_key,
    add_quiet,
    add_verb,
    add_workers,
    emit_table,
    layout_of,
    note,
    say,
)
from iad_pipeline.errors import IadError
from iad_pipeline.settings import AnnotationSettings


def cmd_datasets_list(args: argparse.Namespace) -> int:
    from iad_pipeline.datasets.fetch import read_marker
    from iad_pipeline.datasets.registry import SPECS

    layout = layout_of(args)
    rows = []
    for spec in SPECS.values():
        record = read_marker(layout.data, spec.key)
        installed = "no" if record is None else f"yes ({record.mode}"
        if record is not None:
            installed += ", synthetic)" if record.synthetic else ")"
        rows.append((spec.key, spec.name, spec.licence, spec.size, spec.download_kind, installed))
    columns = ("key", "name", "licence", "size", "download", "installed")
    emit_table(args, f"Datasets ({layout.data})", columns, rows)
    return 0


def cmd_datasets_fetch(args: argparse.Namespace) -> int:
    from iad_pipeline.datasets.fetch import Source, fetch
    from iad_pipeline.datasets.registry import get_spec

    spec = get_spec(args.key)
    layout = layout_of(args)
    note(f"{spec.name}: licence {spec.licence} ({spec.homepage})")
    source = Source(
        url=args.url,
        sha256=args.sha256,
        md5=getattr(args, "md5", None) or None,
        from_path=Path(args.from_path) if args.from_path else None,
    )
    record = fetch(
        args.key,
        data_dir=layout.data,
        source=source,
        accept_license=args.accept_license,
        progress=not args.quiet,
        retries=args.retries,
    )
    state = "already installed" if record.already_installed else f"installed ({record.mode})"
    for warning in record.warnings:
        note(f"[yellow]warning:[/yellow] {warning}")
    say(f"{args.key}: {state} at {record.path}")
    return 0


def cmd_datasets_synth(args: argparse.Namespace) -> int:
    import shutil

    from iad_pipeline.datasets.fetch import Source, fetch, read_marker
    from iad_pipeline.synthetic import pack_archive, synthesize

    categories = [c for c in args.categories.split(",") if c] if args.categories else None
    options = {
        "per_class": args.per_class,
        "seed": args.seed,
        "size": args.size,
        "categories": categories,
        "progress": not args.quiet,
    }
    if args.out:
        target = Path(args.out).expanduser().resolve()
        report = synthesize(args.key, target, **options)
        note(
            f"{args.key}: {report.n_images} images ({report.n_anomalous} anomalous, "
            f"{report.n_masks} masks) in {target}"
        )
        if args.archive:
            path, digest = pack_archive(args.key, target)
            say(f"{path} {digest}")
        return 0
    # default: install into the profile's data folder, through the real install path
    layout = layout_of(args)
    existing = read_marker(layout.data, args.key)
    if existing is not None:
        say(f"{args.key}: already installed at {existing.path}")
        return 0
    tree = layout.synthetic / args.key
    if tree.exists():  # our own work folder (never a user's): rebuild it with these options
        shutil.rmtree(tree)
    report = synthesize(args.key, tree, **options)
    archive, digest = pack_archive(args.key, tree)
    record = fetch(
        args.key,
        data_dir=layout.data,
        source=Source(from_path=archive, sha256=digest, synthetic=True),
        progress=not args.quiet,
    )
    note(
        f"{args.key}: {report.n_images} synthetic images ({report.n_anomalous} anomalous, "
        f"{report.n_masks} masks), packed as {archive.name} and installed"
    )
    if args.archive:
        say(f"{archive} {digest}")
    say(f"{args.key}: installed ({record.mode}, synthetic) at {record.path}")
    return 0


def _counts(df, by: Sequence[str], name: str) -> tuple[list[str], list[tuple]]:
    counts = df.group_by(list(by)).len(name).sort(list(by))
    return counts.columns, list(counts.iter_rows())


def cmd_samples(args: argparse.Namespace) -> int:
    from iad_pipeline.stages import write_samples_table

    layout = layout_of(args)
    result, paths = write_samples_table(
        args.key,
        layout,
        workers=args.workers,
        progress=not args.quiet,
        out=Path(args.out) if args.out else None,
    )
    columns, rows = _counts(result.samples, ("split", "label"), "images")
    emit_table(args, f"{args.key}: {result.samples.height} samples", columns, rows)
    if result.quarantine.height:
        reasons = result.quarantine.group_by("reason").len("rows").sort("reason")
        summary = ", ".join(f"{r} {n}" for r, n in reasons.iter_rows())
        note(
            f"[yellow]quarantine:[/yellow] {result.quarantine.height} rows ({summary}) "
            f"in {paths['quarantine']}"
        )
    else:
        note("quarantine: empty")
    note(f"wrote {paths['samples']}")
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    import polars as pl

    from iad_pipeline.stages import write_annotations

    layout = layout_of(args)
    result, paths = write_annotations(
        args.key,
        layout,
        settings=AnnotationSettings(args.dilate_px, args.min_area_px),
        workers=args.workers,
        progress=not args.quiet,
        out=Path(args.out) if args.out else None,
    )
    df = result.annotations
    summary = df.group_by("status").agg(
        pl.len().alias("samples"), pl.col("box_count").sum().alias("boxes")
    )
    rows = list(summary.sort("status").iter_rows())
    emit_table(args, f"{args.key}: {df.height} samples annotated", summary.columns, rows)
    note(f"wrote {paths['annotations']}")
    return 0


def cmd_questions(args: argparse.Namespace) -> int:
    import polars as pl

    from iad_pipeline.questions.mmad_json import CHOICE_STYLES, write_mmad_json
    from iad_pipeline.stages import STYLES, build_question_bank, read_table, write_question_bank

    layout = layout_of(args)
    styles = [s for s in args.styles.split(",") if s] if args.styles else list(STYLES)
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    if args.format == "mmad":
        if not args.out:
            msg = "--format mmad needs --out FILE.json"
            raise IadError(msg)
        questions = build_question_bank(
            args.key, layout, styles=styles, tasks=tasks, seed=args.seed
        )
        left_out = sorted(set(questions["style"]) - set(CHOICE_STYLES))
        if left_out:
            questions = questions.filter(pl.col("style").is_in(list(CHOICE_STYLES)))
            note(
                f"mmad.json holds lettered choice questions only: left out styles "
                f"{', '.join(left_out)} (use --format parquet for them)"
            )
        if questions.is_empty():
            msg = (
                f"no questions of a style mmad.json can hold ({', '.join(CHOICE_STYLES)}) "
                f"among --styles {','.join(styles)}"
            )
            raise IadError(msg)
        samples = read_table(layout, "samples", args.key, made_by="samples")
        out = write_mmad_json(questions, Path(args.out), data_root=layout.data, samples=samples)
    else:
        questions, out = write_question_bank(
            args.key,
            layout,
            styles=styles,
            tasks=tasks,
            seed=args.seed,
            out=Path(args.out) if args.out else None,
        )
    columns, rows = _counts(questions, ("style", "task"), "questions")
    emit_table(args, f"{args.key}: {questions.height} questions", columns, rows)
    note(f"wrote {out}")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the data verbs: datasets (list, fetch, synth), samples, annotate, questions."""
    ds = verbs.add_parser(
        "datasets",
        help="list, fetch and synthesize datasets",
        description="List, fetch and synthesize datasets.",
    )
    ds_verbs = ds.add_subparsers(dest="ds_verb", required=True, metavar="ACTION")

    add_verb(
        ds_verbs,
        "list",
        cmd_datasets_list,
        summary="table of datasets, licences and install state",
        description="Show every dataset of the registry and whether it is installed (plain "
        "tab-separated lines when stdout is not a terminal).",
        shared=(add_data_dir, add_json),
    )

    p = add_verb(
        ds_verbs,
        "fetch",
        cmd_datasets_fetch,
        summary="download (or take --from) and verify a dataset",
        description="Download, verify (sha256 or md5) and extract a dataset into "
        "<data-dir>/<KEY>/, or install one you downloaded "
        "with --from.",
        shared=(add_key, add_data_dir, add_quiet),
    )
    p.add_argument("--url", help="download from this URL instead (links move)")
    p.add_argument("--sha256", help="expected sha256 of the archive (64 hex digits)")
    p.add_argument(
        "--md5", help="expected md5 of the archive, where that is what is published (32 hex)"
    )
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

    p = add_verb(
        ds_verbs,
        "synth",
        cmd_datasets_synth,
        summary="install a synthetic dataset in KEY's real layout",
        description="Write a synthetic dataset in KEY's real raw on-disk layout (exact masks), "
        "pack it in the real archive format and install it into the profile's data folder "
        "through the real verify-and-extract path, so `iad samples KEY` can read it. With "
        "--out DIR, only write the tree to DIR (nothing installed). With --archive, also print "
        "'<archive> <sha256>' of the packed archive.",
        shared=(add_key, add_data_dir, add_quiet),
    )
    p.add_argument(
        "--out", help="only write the tree into this folder (must not exist or be empty)"
    )
    p.add_argument("--per-class", type=int, default=3, help="images per label folder (3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (128)")
    p.add_argument("--categories", help="comma-separated subset of the real categories")
    p.add_argument("--archive", action="store_true", help="also pack the real archive format")
    p = add_verb(
        verbs,
        "samples",
        cmd_samples,
        summary="build the samples and quarantine tables of a dataset",
        description="Read <data-dir>/<KEY>/ and write the samples table and its quarantine "
        "table (the samples asset's files: tables/samples/KEY.parquet, "
        "tables/quarantine/samples/KEY.parquet).",
        shared=(add_key, add_data_dir, add_json, add_workers, add_quiet),
    )
    p.add_argument(
        "--out",
        metavar="FILE.parquet",
        help="write here instead (and FILE.quarantine.parquet beside it)",
    )
    p = add_verb(
        verbs,
        "annotate",
        cmd_annotate,
        summary="defect boxes, 3x3 grid regions and mask areas",
        description="Read KEY's samples table (run `iad samples KEY` first) and write one "
        "annotation row per sample (boxes, grid regions, mask area, status), its quarantine "
        "table and a preview sheet: the annotations asset's files.",
        shared=(add_key, add_data_dir, add_json, add_workers, add_quiet),
    )
    p.add_argument(
        "--out",
        metavar="FILE.parquet",
        help="write here instead (FILE.quarantine.parquet, FILE.preview.png beside it)",
    )
    dilate, area = AnnotationSettings.dilate_px, AnnotationSettings.min_area_px
    p.add_argument(
        "--dilate-px",
        type=int,
        default=dilate,
        help=f"dilation grouping fragments into one box ({dilate}; 0: none)",
    )
    p.add_argument("--min-area-px", type=int, default=area, help=f"smallest defect group ({area})")
    p = add_verb(
        verbs,
        "questions",
        cmd_questions,
        summary="multiple-choice questions, parquet or MMAD json",
        description="Build KEY's question bank from its samples and annotations tables (run "
        "`iad samples KEY` and `iad annotate KEY` first) and write it as parquet (the "
        "question_bank asset's table by default) or as MMAD-format json (the lettered choice "
        "styles; keys relative to the data dir, so MMAD's scripts can read it).",
        shared=(add_key, add_data_dir, add_json, add_quiet),
    )
    p.add_argument(
        "--tasks",
        help="comma-separated: anomaly_detection, defect_classification, "
        "defect_localization, object_classification, binary_anomaly",
    )
    p.add_argument("--styles", help="comma-separated: emit, anomalyr1, lr_iad, adfm (all)")
    p.add_argument("--format", choices=("mmad", "parquet"), default="parquet")
    p.add_argument(
        "--out", metavar="FILE", help="file to write (required for mmad; parquet: the table)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of option order (0)")
