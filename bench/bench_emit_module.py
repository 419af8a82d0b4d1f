"""EMIT's comparison module on and off: the demo_emit recipe twice, same data, same seeds.

EMIT's ablation ("w/o SP & CE") in miniature, on the tiny offline InternVL3 (random weights):
an EMIT-style training set (questions with a normal reference image) is split by sample into a
training part and a held-out part. The ``demo_emit`` recipe then runs through
``training.grpo.run_stage`` -- the stages ``iad train --recipe demo_emit`` runs -- twice:

- **on**: the recipe as written: stage 1 (``sft``) aligns only the soft prompt and the heat-map
  projector, stage 2 (``grpo``) trains the LoRA adapter and the module together;
- **off**: the recipe's switch (``emit_module.enabled: false``): no placeholder, no module.
  Stage 1 trains only the module, so without it there is nothing to train and it is skipped
  (its time is shown as ``-``); stage 2 is the same GRPO on the plain model.

Each final model then answers the held-out anomaly-detection questions
(``training.sft.letter_accuracy``: the letter whose answer token has the higher logit; with
the module on, the prompts carry its placeholder and the forward pass injects the hints).
Prints held-out accuracy of both runs and their delta (with a 95 % interval half-width per
run), the wall time of each stage and the on/off ratios of the same run, and writes every
number to ``--out/emit_module.json``. The tiny model's scores say nothing about EMIT's real
gain; this measures what the module costs and that both variants train and evaluate.

    python bench/bench_emit_module.py                      # a few CPU minutes
    python bench/bench_emit_module.py --per-class 8 --grpo-steps 16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_training_set(out: Path, per_class: int, categories: list[str], seed: int) -> Path:
    """An exported EMIT training set (the ``training_set`` asset's format) from synthetic MPDD."""
    from iad_pipeline.annotate import annotate_samples
    from iad_pipeline.datasets.registry import get_spec
    from iad_pipeline.datasets.samples import build_samples
    from iad_pipeline.questions.builders import build_questions
    from iad_pipeline.questions.export import save_hf_dataset, to_hf_dataset
    from iad_pipeline.synthetic import synthesize

    root = synthesize("mpdd", out / "mpdd", per_class=per_class, categories=categories, seed=seed)
    samples = build_samples(get_spec("mpdd").scan(root.root)).samples
    annotations = annotate_samples(samples, workers=1).annotations
    refs = dict(zip(samples["sample_id"], samples["image_path"], strict=True))
    questions = build_questions(samples, annotations, styles=["emit"], reference_images=refs)
    return save_hf_dataset(to_hf_dataset(questions), out / "emit")


def split_by_sample(path: Path, held_out: float, seed: int, out: Path) -> tuple[Path, Path]:
    """Training and held-out parts of an exported set, no sample in both (saved to disk)."""
    import random

    import datasets

    ds = datasets.load_from_disk(str(path))
    key = "sample_id" if "sample_id" in ds.column_names else "image"
    ids = sorted({str(v) for v in ds[key]})
    random.Random(seed).shuffle(ids)
    test_ids = set(ids[: max(1, round(held_out * len(ids)))])
    train = ds.filter(lambda r: str(r[key]) not in test_ids)
    test = ds.filter(lambda r: str(r[key]) in test_ids)
    train.save_to_disk(str(out / "train"))
    test.save_to_disk(str(out / "held_out"))
    return out / "train", out / "held_out"


def variant(recipe, on: bool, sft_steps: int, grpo_steps: int):
    """The recipe with the module on (as written) or off (its switch; stage 1 dropped)."""
    sft = dataclasses.replace(recipe.sft, args={**recipe.sft.args, "max_steps": sft_steps})
    grpo = {**recipe.grpo, "max_steps": grpo_steps}
    if on:
        return dataclasses.replace(recipe, sft=sft, grpo=grpo)
    module = dataclasses.replace(recipe.emit_module, enabled=False)
    return dataclasses.replace(recipe, emit_module=module, stages=("grpo",), grpo=grpo)


def run(recipe, train_set: Path, held_out: Path, out: Path, seed: int) -> dict:
    """Train the variant's stages into ``out``; time each; score the final model."""
    from training.checkpoints import latest_checkpoint
    from training.emit_stages import prepare_model
    from training.grpo import load_training_dataset, run_stage, stage_dir, stage_model
    from training.sft import letter_accuracy

    args = argparse.Namespace(
        training_set=str(train_set), model_dir=str(out.parent / "model"), max_steps=None, seed=seed
    )
    result: dict = {"stages": {}}
    start = None
    for stage in recipe.stages:
        began = time.perf_counter()
        run_stage(recipe, stage, args, out, start, None)
        wall = time.perf_counter() - began
        steps = recipe.sft.args["max_steps"] if stage == "sft" else recipe.grpo["max_steps"]
        result["stages"][stage] = {"wall_s": wall, "steps": steps, "s_per_step": wall / steps}
        start = latest_checkpoint(stage_dir(out, stage))
    model, processor = stage_model(recipe, Path(args.model_dir), start)
    model = prepare_model(model, processor, recipe.emit_module, "grpo", start=start)
    rows = load_training_dataset(
        held_out, dataclasses.replace(recipe, max_train_samples=None), seed
    )
    rows = rows.filter(lambda r: r["task"] == "anomaly_detection")
    result["held_out"] = len(rows)
    letters = list(rows["solution"])
    result["held_out_letters"] = {x: letters.count(x) for x in sorted(set(letters))}
    result["held_out_accuracy"] = letter_accuracy(model, processor, rows, recipe.sft.think)
    return result


def half_width(acc: float, n: int) -> float:
    """95 % normal-approximation half-width, in points."""
    return 196 * math.sqrt(acc * (1 - acc) / n) if n else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--training-set", type=Path, default=None, help="an exported EMIT set (default: built)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "emit_module")
    parser.add_argument("--per-class", type=int, default=5, help="synthetic images per class")
    parser.add_argument("--categories", nargs="+", default=["metal_plate", "bracket_black"])
    parser.add_argument("--held-out", type=float, default=0.3, help="share of samples held out")
    parser.add_argument("--sft-steps", type=int, default=8, help="stage 1 steps (module on)")
    parser.add_argument("--grpo-steps", type=int, default=8, help="stage 2 steps (both runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import shutil

    import torch

    from training.config import load_recipe

    torch.set_num_threads(args.threads)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    exported = args.training_set or build_training_set(
        args.out / "data", args.per_class, args.categories, args.seed
    )
    train_set, held_out = split_by_sample(exported, args.held_out, args.seed, args.out / "split")
    base = load_recipe("demo_emit")
    results = {}
    for name, on in (("on", True), ("off", False)):
        recipe = variant(base, on, args.sft_steps, args.grpo_steps)
        torch.manual_seed(args.seed)
        results[name] = run(recipe, train_set, held_out, args.out / name, args.seed)

    n = results["on"]["held_out"]
    letters = ", ".join(f"{k} {v}" for k, v in results["on"]["held_out_letters"].items())
    print(
        f"\nheld-out anomaly-detection questions: {n} (chance 50%; answers {letters}); "
        f"seed {args.seed}"
    )
    print(
        f"{'module':<8}{'acc %':>8}{'95% +-':>8}{'sft s':>8}{'sft s/step':>12}"
        f"{'grpo s':>8}{'grpo s/step':>13}"
    )
    for name in ("on", "off"):
        r = results[name]
        acc = r["held_out_accuracy"]
        sft = r["stages"].get("sft")
        grpo = r["stages"]["grpo"]
        sft_s = f"{sft['wall_s']:.1f}" if sft else "-"
        sft_ps = f"{sft['s_per_step']:.2f}" if sft else "-"
        print(
            f"{name:<8}{100 * acc:>8.1f}{half_width(acc, n):>8.1f}{sft_s:>8}{sft_ps:>12}"
            f"{grpo['wall_s']:>8.1f}{grpo['s_per_step']:>13.2f}"
        )
    delta = 100 * (results["on"]["held_out_accuracy"] - results["off"]["held_out_accuracy"])
    on_grpo, off_grpo = (results[k]["stages"]["grpo"]["s_per_step"] for k in ("on", "off"))
    on_total = sum(s["wall_s"] for s in results["on"]["stages"].values())
    off_total = sum(s["wall_s"] for s in results["off"]["stages"].values())
    results["delta_points"] = delta
    results["ratios"] = {
        "grpo_s_per_step_on_over_off": on_grpo / off_grpo,
        "training_wall_on_over_off": on_total / off_total,
    }
    print(f"accuracy delta (on - off): {delta:+.1f} points")
    print(
        f"ratio grpo s/step on/off: {on_grpo / off_grpo:.2f}; "
        f"whole training on/off: {on_total / off_total:.2f} (same run, same machine)"
    )
    (args.out / "emit_module.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out / 'emit_module.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
