"""``iad score``, ``iad prompt``, ``iad eval``: scoring an answers file, the prompt a model
receives, and the evaluation the ``mmad_eval`` / ``cross_dataset_eval`` assets run.

Registered with the ``iad`` command through the ``iad_pipeline.cli`` entry-point group.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from iad_pipeline.cli.common import (
    add_json,
    add_profile,
    add_quiet,
    add_verb,
    consoles,
    emit_table,
    layout_of,
    note,
)
from iad_pipeline.errors import IadError
from iad_pipeline.run_folders import (
    checkpoint_key,
    checkpoint_recipe,
    is_checkpoint,
    run_evaluation,
)

RECIPE = "recipe"  # --protocol: the one the checkpoint's run folder records


def cmd_score(args: argparse.Namespace) -> int:
    from eval.records import load_answer_records
    from eval.reports import format_table, write_mmad_csv
    from eval.scoring import score_mmad

    records = load_answer_records(Path(args.answers))
    scores = score_mmad(records, mode=args.mode)
    print(format_table(scores))
    if args.out:
        path = write_mmad_csv(scores, Path(args.out))
        consoles.out.print(f"wrote {path}")
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
    from eval.pipeline import EvalOptions, evaluate_set

    layout = layout_of(args)
    target = args.model
    if args.backend == "openai":
        key, recipe, folder = args.name or target.replace("/", "_"), "external", None
    else:
        folder = Path(target).expanduser().resolve()
        if not folder.is_dir():
            msg = f"{folder}: no such checkpoint or model folder"
            raise IadError(msg)
        target = folder
        key, recipe = _checkpoint_name(folder, args.name)
    protocol = _protocol(args, folder)
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
        options=EvalOptions(
            protocol=protocol,
            backend=args.backend,
            limit=args.limit,
            batch_size=args.batch_size,
            progress=not args.quiet,
            ray=ray,
        ),
    )
    columns = result.by_type.columns
    emit_table(
        args,
        f"{key} on {args.set} ({protocol.name}, {result.answers.height} answers)",
        columns,
        list(result.by_type.iter_rows()),
    )
    headline = "n/a" if result.headline is None else f"{result.headline:.2f}"
    note(f"headline {headline}; run {result.run['run_id']} recorded in {layout.warehouse}")
    for name, path in result.paths.items():
        note(f"{name}: {path}")
    for warning in result.warnings:
        consoles.err.print(f"warning: {warning}", markup=False, soft_wrap=True)
    return 0


def _checkpoint_name(folder: Path, name: str | None) -> tuple[str, str]:
    """(key, recipe): a run's ``<recipe>/<stage>/checkpoint-<n>`` is ``<recipe>-<stage>-<n>``
    (``<recipe>-<n>`` in the one-stage layout), as the checkpoint sensor names it; any other
    model folder is its own name."""
    if is_checkpoint(folder):
        return name or checkpoint_key(folder), checkpoint_recipe(folder)
    return name or folder.name, folder.name


def _protocol(args: argparse.Namespace, folder: Path | None):
    """The protocol ``--protocol`` names, the flags' changes on top. ``recipe`` is the one the
    checkpoint's run folder records, as the evaluation assets ask it (without MMAD's domain
    knowledge on a cross-dataset set); ``mmad`` for a folder that records none."""
    from eval.pipeline import recipe_protocol_on
    from eval.protocols import protocol_named

    name, changes = args.protocol, {}
    if name == RECIPE:
        recorded = run_evaluation(folder) if folder is not None and is_checkpoint(folder) else None
        if recorded is None:
            name = "mmad"
            if folder is not None and is_checkpoint(folder):
                note(f"{folder}: its run folder records no evaluation protocol; asking with mmad")
        else:
            name, changes = recipe_protocol_on(*recorded, args.set)
    flags = {
        "shots": args.shots,
        "template": args.template,
        "answer_rule": args.answer_rule,
        "knowledge": args.knowledge or None,
        "shuffle_options": args.shuffle or None,
        "seed": args.seed,
    }
    changes = changes | {k: v for k, v in flags.items() if v is not None}
    return protocol_named(name, mmad_version=args.mmad_version, **changes)


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``iad score``, ``iad prompt`` and ``iad eval``."""
    p = add_verb(
        verbs,
        "score",
        cmd_score,
        summary="MMAD accuracy table of an answers file",
        description="Score answers as MMAD does: MMAD's own answer-record json (a list of "
        "{image, question, question_type, correct_answer, gpt_answer}) or our JSONL/parquet. "
        "'official' reproduces MMAD's scorer, quirks included; 'strict' scores unparseable "
        "answers as wrong.",
    )
    p.add_argument("answers", metavar="ANSWERS", help="answers file (.json, .jsonl, .parquet)")
    p.add_argument("--mode", choices=("official", "strict"), default="official")
    p.add_argument("--out", metavar="FILE.csv", help="write MMAD's *_accuracy.csv layout")
    p = add_verb(
        verbs,
        "prompt",
        cmd_prompt,
        summary="what a model receives for one MMAD question (JSON)",
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
    p = add_verb(
        verbs,
        "eval",
        cmd_eval,
        summary="evaluate a checkpoint or model on an MMAD or cross-dataset set",
        description="Run the evaluation the mmad_eval / cross_dataset_eval assets run: answer "
        "the set's questions (resumable answer store), score them, record the run in the "
        "profile's results.duckdb, write the reports, and print the score table.",
        shared=(add_profile, add_json, add_quiet),
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
        choices=(RECIPE, "mmad", "emit_think", "emit_direct"),
        default=RECIPE,
        help="recipe (default): the one the checkpoint's run folder records (its recipe's "
        "prompts, option shuffle and pixel bounds), as the evaluation assets ask it; mmad "
        "for other folders. mmad: MMAD's qwen2_5_vl_query.py; emit_*: EMIT's",
    )
    p.add_argument("--shots", type=int, default=None, help="template images (protocol's)")
    p.add_argument("--template", choices=("random", "similar"), default=None)
    p.add_argument("--knowledge", action="store_true", help="add MMAD's domain knowledge")
    p.add_argument("--shuffle", action="store_true", help="seeded option shuffling")
    p.add_argument("--seed", type=int, default=None, help="seed of the shuffle (protocol's: 0)")
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
