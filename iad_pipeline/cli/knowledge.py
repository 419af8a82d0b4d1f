"""``iad knowledge``: generate or show the domain-knowledge texts of a dataset."""

from __future__ import annotations

import argparse
import json
import sys

from iad_pipeline.cli.common import (
    add_data_dir,
    add_json,
    add_key,
    add_quiet,
    add_verb,
    consoles,
    emit_table,
    layout_of,
    note,
    say,
)
from iad_pipeline.errors import IadError
from iad_pipeline.settings import PROVIDERS, KnowledgeSettings


def cmd_knowledge_generate(args: argparse.Namespace) -> int:
    import polars as pl

    from iad_pipeline.knowledge import make_provider
    from iad_pipeline.stages import read_table, write_domain_knowledge

    layout = layout_of(args)
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
    emit_table(args, title, ("category", "key", "status", "text"), rows)
    failed = result.table.filter(pl.col("status") != "ok").height
    share = f" ({failed / result.table.height:.0%})" if result.table.height else ""
    consoles.err.print(
        f"requests {s['requests_made']}, cache hits {s['cache_hits']}, failures "
        f"{failed} of {result.table.height}{share}, tokens "
        f"{s['prompt_tokens']}+{s['completion_tokens']}"
        + (", stopped by the budget" if s["budget_stopped"] else ""),
        soft_wrap=True,
    )
    note(f"wrote {paths['table']} and {paths['json']}")
    result.check_not_all_failed(f"knowledge generate {args.key}")
    return 0


def cmd_knowledge_show(args: argparse.Namespace) -> int:
    import polars as pl

    layout = layout_of(args)
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
        say(f"{row['key']} ({row['provider']}, {row['status']})")
        say(row["text"] or f"(no text: {row['error']})")
        say("")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``iad knowledge`` (generate, show)."""
    kn = verbs.add_parser(
        "knowledge",
        help="domain knowledge texts (EMIT) per category",
        description="Generate or show domain-knowledge texts.",
    )
    kn_verbs = kn.add_subparsers(dest="kn_verb", required=True, metavar="ACTION")
    p = add_verb(
        kn_verbs,
        "generate",
        cmd_knowledge_generate,
        summary="write the knowledge of a dataset's categories",
        description="Ask the provider for EMIT's defect and normal texts "
        "of every category of KEY (its samples table: run `iad samples KEY` first); writes "
        "parquet and MMAD's domain_knowledge.json shape under the profile's "
        "tables/knowledge/. The API key is read from OPENAI_API_KEY.",
        shared=(add_key, add_data_dir, add_json, add_quiet),
    )
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
    p = add_verb(
        kn_verbs,
        "show",
        cmd_knowledge_show,
        summary="print a category's texts",
        description="Print the knowledge texts of one category.",
        shared=(add_key, add_data_dir, add_json),
    )
    p.add_argument("category", metavar="CATEGORY")
