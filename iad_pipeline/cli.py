"""The ``iad`` command line: the pipeline's core steps for people who work outside the UI.

Every verb has ``--help``; every failure exits non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
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


def cmd_annotate(args: argparse.Namespace) -> int:
    from iad_pipeline.annotate import annotate_samples
    from iad_pipeline.datasets.ingest import quarantine_path_for, read_samples
    from iad_pipeline.fsutil import write_parquet

    data_dir = _data_dir(args.data_dir)
    samples = read_samples(args.key, data_dir, workers=args.workers, progress=not args.quiet)
    result = annotate_samples(
        samples.samples,
        dilate_px=args.dilate_px,
        min_area_px=args.min_area_px,
        workers=args.workers,
        progress=not args.quiet,
    )
    out = Path(args.out)
    write_parquet(result.annotations, out)
    write_parquet(result.quarantine, quarantine_path_for(out))
    df = result.annotations
    table = Table(title=f"{args.key}: {df.height} samples annotated")
    for column in ("status", "samples", "boxes"):
        table.add_column(column)
    import polars as pl

    summary = df.group_by("status").agg(
        pl.len().alias("samples"), pl.col("box_count").sum().alias("boxes")
    )
    for row in summary.sort("status").iter_rows():
        table.add_row(*(str(v) for v in row))
    _c.out.print(table)
    _c.out.print(f"wrote {out}")
    return 0


def cmd_questions(args: argparse.Namespace) -> int:
    from iad_pipeline.annotate import annotate_samples
    from iad_pipeline.datasets.ingest import read_samples
    from iad_pipeline.fsutil import write_parquet
    from iad_pipeline.questions.builders import build_questions
    from iad_pipeline.questions.mmad_json import read_mmad_json, write_mmad_json
    from iad_pipeline.questions.templates import similar_and_random
    from iad_pipeline.stages import STYLES

    data_dir = _data_dir(args.data_dir)
    styles = [s for s in args.styles.split(",") if s] if args.styles else list(STYLES)
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    samples = read_samples(
        args.key, data_dir, workers=args.workers, progress=not args.quiet
    ).samples
    templates = {}
    if args.key == "mmad":
        root = (data_dir / "mmad").absolute()
        questions = read_mmad_json(root / "mmad.json", root)
    else:
        annotations = annotate_samples(samples, workers=args.workers).annotations
        pool = samples.filter(~samples["is_anomalous"] & (samples["split"] == "train"))
        templates = similar_and_random(samples, pool, k=3, seed=args.seed, backend="pixels")
        refs = {
            sid: t["similar_templates"][0] for sid, t in templates.items() if t["similar_templates"]
        }
        kwargs = {"tasks": tasks} if tasks else {}
        questions = build_questions(
            samples, annotations, styles=styles, seed=args.seed, reference_images=refs, **kwargs
        )
    out = Path(args.out)
    if args.format == "mmad":
        write_mmad_json(questions, out, data_root=data_dir, samples=samples, templates=templates)
    else:
        write_parquet(questions, out)
    counts = questions.group_by(["style", "task"]).len("questions").sort(["style", "task"])
    table = Table(title=f"{args.key}: {questions.height} questions")
    for column in counts.columns:
        table.add_column(column)
    for row in counts.iter_rows():
        table.add_row(*(str(v) for v in row))
    _c.out.print(table)
    _c.out.print(f"wrote {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import subprocess

    from iad_pipeline.paths import profile_root

    # Training runs as its own process (training/grpo.py, as under accelerate or Dagster),
    # so the core never imports the training package.
    name = Path(args.recipe).stem
    output = Path(args.output) if args.output else profile_root() / "runs" / name
    command = [
        sys.executable,
        "-m",
        "training.grpo",
        "--recipe",
        args.recipe,
        "--output",
        str(output),
    ]
    if args.max_steps is not None:
        command += ["--max-steps", str(args.max_steps)]
    if args.resume:
        command.append("--resume")
    if args.overwrite:
        command.append("--overwrite")
    if args.verbose:
        command.append("--verbose")
    if args.training_set:
        command += ["--training-set", args.training_set]
    _c.err.print(f"training {args.recipe} into {output}", soft_wrap=True)
    code = subprocess.run(command, check=False).returncode
    if code == 2:  # a user error (recipe, data, run folder): the script printed one line
        return 2
    if code != 0:
        msg = f"training {args.recipe} failed (exit {code}); see the log above"
        raise IadError(msg)
    _c.out.print(f"checkpoints in {output}")
    return 0


def _tables_dir(data_dir: Path) -> Path:
    """Tables live beside the data folder: ``$IAD_HOME/data`` -> ``$IAD_HOME/tables``."""
    return data_dir.parent / "tables"


def cmd_knowledge_generate(args: argparse.Namespace) -> int:
    import polars as pl

    from iad_pipeline.datasets.ingest import read_samples
    from iad_pipeline.stages import (
        ProviderSettings,
        make_knowledge_provider,
        write_domain_knowledge,
    )

    data_dir = _data_dir(args.data_dir)
    tables = _tables_dir(data_dir)
    settings = ProviderSettings(
        name=args.provider,
        base_url=args.base_url or os.environ.get("OPENAI_BASE_URL"),
        model=args.model,
        max_requests=args.max_requests,
        concurrency=args.concurrency,
    )
    provider = make_knowledge_provider(settings, data_dir.parent / "cache" / "llm", data_dir)
    samples = read_samples(args.key, data_dir, progress=not args.quiet).samples
    result, paths = write_domain_knowledge(args.key, samples, tables, provider)
    s = result.report.summary()
    table = Table(title=f"{args.key}: domain knowledge ({provider.name}, {provider.model})")
    for column in ("category", "key", "status", "text"):
        table.add_column(column, overflow="fold")
    for row in result.table.head(12).iter_rows(named=True):
        text = (row["text"] or row["error"] or "")[:120]
        table.add_row(row["category"], row["key"], row["status"], text)
    _c.out.print(table)
    failed = result.table.filter(pl.col("status") != "ok").height
    _c.err.print(
        f"requests {s['requests_made']}, cache hits {s['cache_hits']}, failures "
        f"{failed}, tokens {s['prompt_tokens']}+{s['completion_tokens']}"
        + (", stopped by the budget" if s["budget_stopped"] else ""),
        soft_wrap=True,
    )
    _c.out.print(f"wrote {paths['table']} and {paths['json']}")
    return 0


def cmd_knowledge_show(args: argparse.Namespace) -> int:
    import polars as pl

    data_dir = _data_dir(args.data_dir)
    path = _tables_dir(data_dir) / "knowledge" / f"{args.key}.parquet"
    if not path.is_file():
        msg = f"{path} does not exist; run: iad knowledge generate {args.key}"
        raise IadError(msg)
    rows = pl.read_parquet(path).filter(pl.col("category") == args.category)
    if rows.is_empty():
        msg = f"no knowledge for category {args.category!r} in {path}"
        raise IadError(msg)
    for row in rows.iter_rows(named=True):
        _c.out.print(f"[bold]{row['key']}[/bold] ({row['provider']}, {row['status']})")
        _c.out.print(row["text"] or f"(no text: {row['error']})", markup=False)
        _c.out.print()
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    # the CLI is the application layer: it reaches the eval package lazily, per verb
    from eval.records import load_answer_records
    from eval.scoring import format_table, score_mmad, write_mmad_csv

    records = load_answer_records(Path(args.answers))
    scores = score_mmad(records, mode=args.mode)
    print(format_table(scores))
    if args.out:
        path = write_mmad_csv(scores, Path(args.out))
        _c.out.print(f"wrote {path}")
    return 0


def _key(p: argparse.ArgumentParser) -> None:
    p.add_argument("key", metavar="KEY", choices=DATASET_KEYS, help=", ".join(DATASET_KEYS))


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", help="data folder (default: $IAD_HOME/data, IAD_HOME defaults to ./.iad)"
    )


def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")


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

    p = ds_verbs.add_parser(
        "list",
        help="table of datasets, licences and install state",
        description="Show every dataset of the registry and whether it is installed.",
    )
    _data_dir_arg(p)
    p.set_defaults(func=cmd_datasets_list)

    p = ds_verbs.add_parser(
        "fetch",
        help="download (or take --from) and verify a dataset",
        description="Download, verify (sha256) and extract a dataset into "
        "<data-dir>/<KEY>/, or install one you downloaded "
        "with --from.",
    )
    _key(p)
    _data_dir_arg(p)
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
    _quiet(p)
    p.set_defaults(func=cmd_datasets_fetch)

    p = ds_verbs.add_parser(
        "synth",
        help="write a synthetic dataset in KEY's real layout",
        description="Write a synthetic dataset in KEY's real raw on-disk "
        "layout (exact masks). With --archive, also pack it "
        "in the real archive format and print "
        "'<path> <sha256>' as the last line.",
    )
    _key(p)
    p.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    p.add_argument("--per-class", type=int, default=3, help="images per label folder (3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (128)")
    p.add_argument("--categories", help="comma-separated subset of the real categories")
    p.add_argument("--archive", action="store_true", help="also pack the real archive format")
    _quiet(p)
    p.set_defaults(func=cmd_datasets_synth)

    p = verbs.add_parser(
        "samples",
        help="build the samples and quarantine tables of a dataset",
        description="Read <data-dir>/<KEY>/ and write the samples table "
        "(parquet) and FILE.quarantine.parquet beside it.",
    )
    _key(p)
    _data_dir_arg(p)
    p.add_argument("--out", required=True, metavar="FILE.parquet", help="samples table to write")
    _workers(p)
    _quiet(p)
    p.set_defaults(func=cmd_samples)

    p = verbs.add_parser(
        "annotate",
        help="defect boxes, 3x3 grid regions and mask areas",
        description="Read <data-dir>/<KEY>/ and write one annotation row per "
        "sample (boxes, grid regions, mask area, status) and "
        "FILE.quarantine.parquet beside it.",
    )
    _key(p)
    _data_dir_arg(p)
    p.add_argument("--out", required=True, metavar="FILE.parquet", help="annotations table")
    p.add_argument(
        "--dilate-px",
        type=int,
        default=15,
        help="dilation grouping fragments into one box (15; 0: none)",
    )
    p.add_argument("--min-area-px", type=int, default=4, help="smallest defect group (4)")
    _workers(p)
    _quiet(p)
    p.set_defaults(func=cmd_annotate)

    p = verbs.add_parser(
        "questions",
        help="multiple-choice questions, parquet or MMAD json",
        description="Build the question bank of <data-dir>/<KEY>/ and write "
        "it as parquet or as MMAD-format json (keys relative to "
        "the data dir, so MMAD's scripts can read it).",
    )
    _key(p)
    _data_dir_arg(p)
    p.add_argument(
        "--tasks",
        help="comma-separated: anomaly_detection, defect_classification, "
        "defect_localization, object_classification, binary_anomaly",
    )
    p.add_argument("--styles", help="comma-separated: emit, anomalyr1, lr_iad, adfm (all)")
    p.add_argument("--format", choices=("mmad", "parquet"), default="parquet")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write")
    p.add_argument("--seed", type=int, default=0, help="seed of option order (0)")
    _workers(p)
    _quiet(p)
    p.set_defaults(func=cmd_questions)

    p = verbs.add_parser(
        "score",
        help="MMAD accuracy table of an answers file",
        description="Score answers as MMAD does: MMAD's own answer-record json (a list of "
        "{image, question, question_type, correct_answer, gpt_answer}) or our JSONL/parquet. "
        "'official' reproduces MMAD's scorer, quirks included; 'strict' scores unparseable "
        "answers as wrong.",
    )
    p.add_argument("answers", metavar="ANSWERS", help="answers file (.json, .jsonl, .parquet)")
    p.add_argument("--mode", choices=("official", "strict"), default="official")
    p.add_argument("--out", metavar="FILE.csv", help="write MMAD's *_accuracy.csv layout")
    p.set_defaults(func=cmd_score)

    kn = verbs.add_parser(
        "knowledge",
        help="domain knowledge texts (EMIT) per category",
        description="Generate or show domain-knowledge texts.",
    )
    kn_verbs = kn.add_subparsers(dest="kn_verb", required=True, metavar="ACTION")
    p = kn_verbs.add_parser(
        "generate",
        help="write the knowledge of a dataset's categories",
        description="Ask the provider for EMIT's defect and normal texts "
        "of every category of KEY; writes parquet and MMAD's "
        "domain_knowledge.json shape under <data-dir>/../tables"
        "/knowledge/. The API key is read from OPENAI_API_KEY.",
    )
    _key(p)
    _data_dir_arg(p)
    p.add_argument(
        "--provider",
        choices=("auto", "openai", "mmad", "template"),
        default="auto",
        help="auto: openai if OPENAI_BASE_URL/KEY is set, else template",
    )
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL)")
    p.add_argument("--model", default="gpt-4-turbo", help="chat model (gpt-4-turbo)")
    p.add_argument("--max-requests", type=int, default=None, help="request budget")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (8)")
    _quiet(p)
    p.set_defaults(func=cmd_knowledge_generate)
    p = kn_verbs.add_parser(
        "show",
        help="print a category's texts",
        description="Print the knowledge texts of one category.",
    )
    _key(p)
    p.add_argument("category", metavar="CATEGORY")
    _data_dir_arg(p)
    p.set_defaults(func=cmd_knowledge_show)

    p = verbs.add_parser(
        "train",
        help="train a recipe, stage by stage: SFT, GRPO (tiny model on CPU: demo)",
        description="Run training/grpo.py for a recipe: each stage (sft, grpo) in order, the "
        "stage that runs, a progress bar, the loss or reward table as training runs, "
        "checkpoints in DIR/<stage>/checkpoint-<step>/ with a DONE marker. A DIR holding "
        "another run's checkpoints is refused without --resume or --overwrite.",
    )
    p.add_argument(
        "--recipe",
        required=True,
        metavar="NAME|PATH",
        help="anomalyr1, adfm, emit, lriad, demo, or a YAML file",
    )
    p.add_argument("--max-steps", type=int, default=None, help="override the recipe's steps")
    p.add_argument("--output", metavar="DIR", help="default: $IAD_HOME/[demo/]runs/<recipe>")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in DIR, in the stage that was running, from its newest "
        "complete checkpoint",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the checkpoints already in DIR and start over",
    )
    p.add_argument(
        "--training-set",
        metavar="DIR",
        help="exported training set (default: the training_set asset's export)",
    )
    p.set_defaults(func=cmd_train)
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
