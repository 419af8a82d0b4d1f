"""The ``iad`` command line: the pipeline's core steps for people who work outside the UI.

Every verb has ``--help``; every failure exits non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.errors import IadError
from iad_pipeline.paths import PROFILES, Layout
from iad_pipeline.settings import PROVIDERS, AnnotationSettings, KnowledgeSettings


class _Consoles:
    """Rich consoles made on first use, so they see the terminal (and COLUMNS) of the call."""

    @property
    def out(self) -> Console:
        return Console()

    @property
    def err(self) -> Console:
        return Console(stderr=True)


_c = _Consoles()


def _say(text: str) -> None:
    """A plain line on stdout: never wrapped or cut, whatever the terminal."""
    print(text, flush=True)


def _note(text: str) -> None:
    """A status line on stderr (kept out of a pipe's data)."""
    _c.err.print(text, soft_wrap=True, highlight=False)


def _layout(args: argparse.Namespace) -> Layout:
    """The layout of this call: ``$IAD_HOME``, ``--profile`` (``$IAD_PROFILE``), ``--data-dir``."""
    return Layout.resolve(
        None, getattr(args, "profile", None), data_dir=getattr(args, "data_dir", None)
    )


def _emit_table(
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
        _c.out.print(table)
        return
    print("\t".join(columns))
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))
    sys.stdout.flush()


def cmd_datasets_list(args: argparse.Namespace) -> int:
    from iad_pipeline.datasets.fetch import read_marker
    from iad_pipeline.datasets.registry import SPECS

    layout = _layout(args)
    rows = []
    for spec in SPECS.values():
        record = read_marker(layout.data, spec.key)
        installed = "no" if record is None else f"yes ({record.mode}"
        if record is not None:
            installed += ", synthetic)" if record.synthetic else ")"
        rows.append((spec.key, spec.name, spec.licence, spec.size, spec.download_kind, installed))
    columns = ("key", "name", "licence", "size", "download", "installed")
    _emit_table(args, f"Datasets ({layout.data})", columns, rows)
    return 0


def cmd_datasets_fetch(args: argparse.Namespace) -> int:
    from iad_pipeline.datasets.fetch import Source, fetch
    from iad_pipeline.datasets.registry import get_spec

    spec = get_spec(args.key)
    layout = _layout(args)
    _note(f"{spec.name}: licence {spec.licence} ({spec.homepage})")
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
        _note(f"[yellow]warning:[/yellow] {warning}")
    _say(f"{args.key}: {state} at {record.path}")
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
        _note(
            f"{args.key}: {report.n_images} images ({report.n_anomalous} anomalous, "
            f"{report.n_masks} masks) in {target}"
        )
        if args.archive:
            path, digest = pack_archive(args.key, target)
            _say(f"{path} {digest}")
        return 0
    # default: install into the profile's data folder, through the real install path
    layout = _layout(args)
    existing = read_marker(layout.data, args.key)
    if existing is not None:
        _say(f"{args.key}: already installed at {existing.path}")
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
    _note(
        f"{args.key}: {report.n_images} synthetic images ({report.n_anomalous} anomalous, "
        f"{report.n_masks} masks), packed as {archive.name} and installed"
    )
    if args.archive:
        _say(f"{archive} {digest}")
    _say(f"{args.key}: installed ({record.mode}, synthetic) at {record.path}")
    return 0


def _counts(df, by: Sequence[str], name: str) -> tuple[list[str], list[tuple]]:
    counts = df.group_by(list(by)).len(name).sort(list(by))
    return counts.columns, list(counts.iter_rows())


def cmd_samples(args: argparse.Namespace) -> int:
    from iad_pipeline.stages import write_samples_table

    layout = _layout(args)
    result, paths = write_samples_table(
        args.key,
        layout,
        workers=args.workers,
        progress=not args.quiet,
        out=Path(args.out) if args.out else None,
    )
    columns, rows = _counts(result.samples, ("split", "label"), "images")
    _emit_table(args, f"{args.key}: {result.samples.height} samples", columns, rows)
    if result.quarantine.height:
        reasons = result.quarantine.group_by("reason").len("rows").sort("reason")
        summary = ", ".join(f"{r} {n}" for r, n in reasons.iter_rows())
        _note(
            f"[yellow]quarantine:[/yellow] {result.quarantine.height} rows ({summary}) "
            f"in {paths['quarantine']}"
        )
    else:
        _note("quarantine: empty")
    _note(f"wrote {paths['samples']}")
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    import polars as pl

    from iad_pipeline.stages import write_annotations

    layout = _layout(args)
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
    _emit_table(args, f"{args.key}: {df.height} samples annotated", summary.columns, rows)
    _note(f"wrote {paths['annotations']}")
    return 0


def cmd_questions(args: argparse.Namespace) -> int:
    import polars as pl

    from iad_pipeline.questions.mmad_json import CHOICE_STYLES, write_mmad_json
    from iad_pipeline.stages import STYLES, build_question_bank, read_table, write_question_bank

    layout = _layout(args)
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
            _note(
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
    _emit_table(args, f"{args.key}: {questions.height} questions", columns, rows)
    _note(f"wrote {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import signal

    from iad_pipeline.supervise import LOCK_ENV, LOCK_NAME, run_folder_lock, run_supervised

    layout = _layout(args)
    _check_training_inputs(args, layout)
    # Training runs as its own process (training/grpo.py, as under accelerate or Dagster).
    name = Path(args.recipe).stem
    output = Path(args.output) if args.output else layout.run(name)
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
    command += ["--training-set", args.training_set or str(_training_set_dir(args, layout))]
    if args.launcher == "ray":
        # the same script as a Ray job on N Ray Train workers (training/ray_train.py)
        ray = ["-m", "training.ray_train", "submit", "--address", args.ray_address]
        command = [sys.executable, *ray, "--workers", str(args.workers), "--", *command[3:]]
    _c.err.print(f"training {args.recipe} into {output}", soft_wrap=True)
    # one trainer per run folder; the child inherits the lock and dies with this process
    with run_folder_lock(output) as fd:
        env = {
            **os.environ,
            "IAD_HOME": str(layout.home),
            "IAD_PROFILE": layout.profile,
            LOCK_ENV: f"{fd}:{output / LOCK_NAME}",
        }
        code, stopped_by = run_supervised(command, env=env, pass_fds=[fd])
    if stopped_by is not None:
        name = signal.Signals(stopped_by).name
        _c.err.print(
            f"iad: training stopped by {name}; the trainer has exited. Continue from the "
            f"newest complete checkpoint with: iad train --recipe {args.recipe} "
            + (f"--output {output} " if args.output else "")
            + "--resume",
            markup=False,
            soft_wrap=True,
        )
        return 128 + stopped_by
    if code == 2:  # a user error (recipe, data, run folder): the script printed one line
        return 2
    if code != 0:
        msg = f"training {args.recipe} failed (exit {code}); see the log above"
        raise IadError(msg)
    _c.out.print(f"checkpoints in {output}")
    return 0


def _training_set_dir(args: argparse.Namespace, layout: Layout) -> Path:
    from training.config import load_recipe

    return layout.training_set_hf(load_recipe(args.recipe).training_set)


def _check_training_inputs(args: argparse.Namespace, layout: Layout) -> None:
    """Refuse before starting a process: a bad recipe or a missing training set is one line."""
    path = Path(args.training_set) if args.training_set else _training_set_dir(args, layout)
    if not path.is_dir():
        from training.config import load_recipe

        name = load_recipe(args.recipe).training_set
        msg = (
            f"{path}: no training set for recipe {args.recipe!r} (profile {layout.profile}); "
            f"materialize training_set[{name}] first (make demo, or the UI), or pass "
            "--training-set DIR"
        )
        raise IadError(msg)


def cmd_knowledge_generate(args: argparse.Namespace) -> int:
    import polars as pl

    from iad_pipeline.knowledge import make_provider
    from iad_pipeline.stages import read_table, write_domain_knowledge

    layout = _layout(args)
    settings = KnowledgeSettings(
        provider=args.provider,
        base_url=args.base_url,
        model=args.model,
        max_requests=args.max_requests,
        concurrency=args.concurrency,
    )
    provider = make_provider(settings, layout)
    samples = read_table(layout, "samples", args.key, made_by="samples")
    result, paths = write_domain_knowledge(args.key, samples, layout, provider)
    s = result.report.summary()
    rows = [
        (row["category"], row["key"], row["status"], row["text"] or row["error"] or "")
        for row in result.table.iter_rows(named=True)
    ]
    if sys.stdout.isatty() and not args.json:  # a terminal gets a short preview
        rows = [(c, k, st, t[:120]) for c, k, st, t in rows[:12]]
    title = f"{args.key}: domain knowledge ({provider.name}, {provider.model})"
    _emit_table(args, title, ("category", "key", "status", "text"), rows)
    failed = result.table.filter(pl.col("status") != "ok").height
    share = f" ({failed / result.table.height:.0%})" if result.table.height else ""
    _c.err.print(
        f"requests {s['requests_made']}, cache hits {s['cache_hits']}, failures "
        f"{failed} of {result.table.height}{share}, tokens "
        f"{s['prompt_tokens']}+{s['completion_tokens']}"
        + (", stopped by the budget" if s["budget_stopped"] else ""),
        soft_wrap=True,
    )
    _note(f"wrote {paths['table']} and {paths['json']}")
    result.check_not_all_failed(f"knowledge generate {args.key}")
    return 0


def cmd_knowledge_show(args: argparse.Namespace) -> int:
    import polars as pl

    layout = _layout(args)
    path = layout.table("knowledge", args.key)
    if not path.is_file():
        msg = f"{path} does not exist; run: iad knowledge generate {args.key}"
        raise IadError(msg)
    rows = pl.read_parquet(path).filter(pl.col("category") == args.category)
    if rows.is_empty():
        msg = f"no knowledge for category {args.category!r} in {path}"
        raise IadError(msg)
    if args.json:
        columns = ("key", "provider", "status", "text", "error")
        print(json.dumps(rows.select(columns).to_dicts()))
        return 0
    for row in rows.iter_rows(named=True):
        _say(f"{row['key']} ({row['provider']}, {row['status']})")
        _say(row["text"] or f"(no text: {row['error']})")
        _say("")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    # the CLI is the application layer: it reaches the eval package lazily, per verb
    from eval.records import load_answer_records
    from eval.reports import format_table, write_mmad_csv
    from eval.scoring import score_mmad

    records = load_answer_records(Path(args.answers))
    scores = score_mmad(records, mode=args.mode)
    print(format_table(scores))
    if args.out:
        path = write_mmad_csv(scores, Path(args.out))
        _c.out.print(f"wrote {path}")
    return 0


def cmd_prompt(args: argparse.Namespace) -> int:
    from eval.prompt_view import show_prompt

    shown = show_prompt(
        Path(args.mmad_json),
        args.key,
        args.question,
        protocol=args.protocol,
        shots=args.shots,
        template=args.template,
        knowledge=args.knowledge,
        model=args.model,
    )
    print(json.dumps(shown, ensure_ascii=False, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from eval.pipeline import evaluate_set
    from eval.protocols import protocol_named

    layout = _layout(args)
    target = args.model
    if args.backend == "openai":
        key, recipe = args.name or target.replace("/", "_"), "external"
    else:
        folder = Path(target).expanduser().resolve()
        if not folder.is_dir():
            msg = f"{folder}: no such checkpoint or model folder"
            raise IadError(msg)
        target = folder
        key, recipe = _checkpoint_name(folder, args.name)
    changes = {
        "shots": args.shots,
        "template": args.template,
        "answer_rule": args.answer_rule,
        "knowledge": args.knowledge or None,
        "shuffle_options": args.shuffle or None,
    }
    protocol = protocol_named(
        args.protocol,
        seed=args.seed,
        mmad_version=args.mmad_version,
        **{k: v for k, v in changes.items() if v is not None},
    )
    ray = None
    if args.backend == "ray":
        ray = {"address": None if args.ray_address == "local" else args.ray_address}
        ray["num_workers"] = args.workers
    result = evaluate_set(
        target,
        args.set,
        checkpoint_key=key,
        recipe=recipe,
        layout=layout,
        protocol=protocol,
        backend=args.backend,
        limit=args.limit,
        batch_size=args.batch_size,
        progress=not args.quiet,
        ray=ray,
    )
    columns = result.by_type.columns
    _emit_table(
        args,
        f"{key} on {args.set} ({protocol.name}, {result.answers.height} answers)",
        columns,
        list(result.by_type.iter_rows()),
    )
    headline = "n/a" if result.headline is None else f"{result.headline:.2f}"
    _note(f"headline {headline}; run {result.run['run_id']} recorded in {layout.warehouse}")
    for name, path in result.paths.items():
        _note(f"{name}: {path}")
    for warning in result.warnings:
        _c.err.print(f"warning: {warning}", markup=False, soft_wrap=True)
    return 0


def _checkpoint_name(folder: Path, name: str | None) -> tuple[str, str]:
    """(key, recipe): ``runs/<recipe>/checkpoint-<n>`` is ``<recipe>-<n>``, as the sensor
    names it; any other model folder is its own name."""
    prefix, _, step = folder.name.partition("-")
    if prefix == "checkpoint" and step.isdigit():
        return name or f"{folder.parent.name}-{step}", folder.parent.name
    return name or folder.name, folder.name


def _key(p: argparse.ArgumentParser) -> None:
    p.add_argument("key", metavar="KEY", choices=DATASET_KEYS, help=", ".join(DATASET_KEYS))


def _profile_arg(p: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    p.add_argument(
        "--profile",
        choices=PROFILES,
        default=default,
        help="demo ($IAD_HOME/demo) or real ($IAD_HOME); default $IAD_PROFILE, else demo",
    )


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    _profile_arg(p)
    p.add_argument(
        "--data-dir",
        help="data folder (default: the profile's data/ under $IAD_HOME, itself ./.iad)",
    )


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the listing as JSON")


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
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at debug level; tracebacks on errors"
    )
    _profile_arg(parser, default=None)
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
        description="Show every dataset of the registry and whether it is installed (plain "
        "tab-separated lines when stdout is not a terminal).",
    )
    _data_dir_arg(p)
    _json(p)
    p.set_defaults(func=cmd_datasets_list)

    p = ds_verbs.add_parser(
        "fetch",
        help="download (or take --from) and verify a dataset",
        description="Download, verify (sha256 or md5) and extract a dataset into "
        "<data-dir>/<KEY>/, or install one you downloaded "
        "with --from.",
    )
    _key(p)
    _data_dir_arg(p)
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
    _quiet(p)
    p.set_defaults(func=cmd_datasets_fetch)

    p = ds_verbs.add_parser(
        "synth",
        help="install a synthetic dataset in KEY's real layout",
        description="Write a synthetic dataset in KEY's real raw on-disk layout (exact masks), "
        "pack it in the real archive format and install it into the profile's data folder "
        "through the real verify-and-extract path, so `iad samples KEY` can read it. With "
        "--out DIR, only write the tree to DIR (nothing installed). With --archive, also print "
        "'<archive> <sha256>' of the packed archive.",
    )
    _key(p)
    _data_dir_arg(p)
    p.add_argument(
        "--out", help="only write the tree into this folder (must not exist or be empty)"
    )
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
        description="Read <data-dir>/<KEY>/ and write the samples table and its quarantine "
        "table (the samples asset's files: tables/samples/KEY.parquet, "
        "tables/quarantine/samples/KEY.parquet).",
    )
    _key(p)
    _data_dir_arg(p)
    _json(p)
    p.add_argument(
        "--out",
        metavar="FILE.parquet",
        help="write here instead (and FILE.quarantine.parquet beside it)",
    )
    _workers(p)
    _quiet(p)
    p.set_defaults(func=cmd_samples)

    p = verbs.add_parser(
        "annotate",
        help="defect boxes, 3x3 grid regions and mask areas",
        description="Read KEY's samples table (run `iad samples KEY` first) and write one "
        "annotation row per sample (boxes, grid regions, mask area, status), its quarantine "
        "table and a preview sheet: the annotations asset's files.",
    )
    _key(p)
    _data_dir_arg(p)
    _json(p)
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
    _workers(p)
    _quiet(p)
    p.set_defaults(func=cmd_annotate)

    p = verbs.add_parser(
        "questions",
        help="multiple-choice questions, parquet or MMAD json",
        description="Build KEY's question bank from its samples and annotations tables (run "
        "`iad samples KEY` and `iad annotate KEY` first) and write it as parquet (the "
        "question_bank asset's table by default) or as MMAD-format json (the lettered choice "
        "styles; keys relative to the data dir, so MMAD's scripts can read it).",
    )
    _key(p)
    _data_dir_arg(p)
    _json(p)
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

    p = verbs.add_parser(
        "prompt",
        help="what a model receives for one MMAD question (JSON)",
        description="Print {images, text} of one question of an mmad.json exactly as the "
        "evaluation builds it: images relative to the file's folder in the order the model "
        "receives them; text rendered with the model's chat template (mmad), EMIT's prompt "
        "string (emit_think, emit_direct) or the request's message content (openai:NAME).",
    )
    p.add_argument("mmad_json", metavar="MMAD_JSON", help="MMAD's mmad.json")
    p.add_argument("--key", required=True, help="query image key in the file")
    p.add_argument("--question", type=int, required=True, metavar="N", help="1-based number")
    p.add_argument("--protocol", choices=("mmad", "emit_think", "emit_direct"), default="mmad")
    p.add_argument("--shots", type=int, metavar="K", help="template images (protocol's)")
    p.add_argument("--template", choices=("random", "similar"), help="template list")
    p.add_argument("--knowledge", metavar="DOMAIN_KNOWLEDGE_JSON", help="add MMAD's knowledge")
    p.add_argument(
        "--model", metavar="DIR|openai:NAME", help="default: the offline tiny Qwen2.5-VL"
    )
    p.set_defaults(func=cmd_prompt)

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
        "of every category of KEY (its samples table: run `iad samples KEY` first); writes "
        "parquet and MMAD's domain_knowledge.json shape under the profile's "
        "tables/knowledge/. The API key is read from OPENAI_API_KEY.",
    )
    _key(p)
    _data_dir_arg(p)
    _json(p)
    ks = KnowledgeSettings
    p.add_argument(
        "--provider",
        choices=PROVIDERS,
        default=ks.provider,
        help=f"{ks.provider}; auto: openai if OPENAI_BASE_URL/KEY is set, else template",
    )
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL)")
    p.add_argument("--model", default=ks.model, help=f"chat model ({ks.model})")
    p.add_argument("--max-requests", type=int, default=ks.max_requests, help="request budget")
    p.add_argument(
        "--concurrency",
        type=int,
        default=ks.concurrency,
        help=f"requests in flight ({ks.concurrency})",
    )
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
    _json(p)
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
    p.add_argument("--output", metavar="DIR", help="default: the profile's runs/<recipe>")
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
    _profile_arg(p)
    p.add_argument(
        "--launcher",
        choices=("python", "ray"),
        default="python",
        help="python: this machine; ray: a Ray job on Ray Train workers",
    )
    p.add_argument(
        "--ray-address",
        default="auto",
        metavar="ADDR",
        help="--launcher ray: auto (the cluster `ray start` started here), http://HOST:8265, "
        "or local (a cluster for this run)",
    )
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="--launcher ray: Ray Train workers"
    )
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser(
        "eval",
        help="evaluate a checkpoint or model on an MMAD or cross-dataset set",
        description="Run the evaluation the mmad_eval / cross_dataset_eval assets run: answer "
        "the set's questions (resumable answer store), score them, record the run in the "
        "profile's results.duckdb, write the reports, and print the score table.",
    )
    p.add_argument(
        "model",
        metavar="CHECKPOINT_OR_MODEL_DIR",
        help="runs/<recipe>/checkpoint-<n>, any model folder (or, with --backend openai, "
        "a model name)",
    )
    p.add_argument(
        "--set",
        required=True,
        metavar="EVAL_SET",
        help="MMAD: DS-MVTec, MVTec-LOCO, VisA, GoodsAD; cross-dataset: visa, mpdd, "
        "dtd_synthetic, dagm, mvtec_3d",
    )
    p.add_argument(
        "--backend",
        choices=("transformers", "vllm", "openai", "ray"),
        default="transformers",
        help="ray: the transformers backend on Ray Data actors (--ray-address, --workers)",
    )
    p.add_argument("--limit", type=int, default=None, help="first N questions only")
    p.add_argument("--name", help="checkpoint name in the results (default from the folder)")
    p.add_argument(
        "--protocol",
        choices=("mmad", "emit_think", "emit_direct"),
        default="mmad",
        help="the authors' protocol (mmad: MMAD's qwen2_5_vl_query.py; emit_*: EMIT's)",
    )
    p.add_argument("--shots", type=int, default=None, help="template images (protocol's)")
    p.add_argument("--template", choices=("random", "similar"), default=None)
    p.add_argument("--knowledge", action="store_true", help="add MMAD's domain knowledge")
    p.add_argument("--shuffle", action="store_true", help="seeded option shuffling")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle (0)")
    p.add_argument("--answer-rule", choices=("mmad", "think"), default=None)
    p.add_argument(
        "--mmad-version",
        choices=("original", "corrected"),
        default="original",
        help="corrected applies eval/mmad_errata.yaml",
    )
    p.add_argument("--ray-address", default="auto", metavar="ADDR", help="--backend ray")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="--backend ray: actors")
    p.add_argument("--batch-size", type=int, default=8, help="questions per batch (8)")
    _profile_arg(p)
    _json(p)
    _quiet(p)
    p.set_defaults(func=cmd_eval)
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
    except BrokenPipeError:  # `iad datasets list | head -1`: the reader is done, so are we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (IadError, OSError) as exc:
        if args.verbose:  # the traceback is for developers: only with -v
            traceback.print_exc()
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        _c.err.print(f"iad: error: {message}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        _c.err.print(
            "iad: interrupted; partial downloads are kept and resume on the next run", markup=False
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
