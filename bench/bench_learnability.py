"""What a random offline Qwen2.5-VL can learn on CPU: letter binding, defect vision, both.

The demo's anomaly-detection question needs two skills at once: seeing whether the query image
shows a defect, and writing the letter that the shuffled options put beside "Yes" or "No".
This benchmark trains a fresh model by plain supervised fine-tuning (the completion is the
EMIT answer ``<think></think><answer>X</answer>``, loss on the completion only) on the demo
profile's EMIT anomaly-detection questions, split by question into training and held-out parts,
and measures held-out accuracy every ``--eval-every`` steps for three versions of the task:

- ``binding``: the answer is the letter of the "Yes" option whatever the image shows -- text
  only, the skill of reading the options;
- ``vision``: the options in a fixed order (``A. Yes. B. No.``), the answer is the truth -- the
  skill of seeing the defect;
- ``full``: the real task (shuffled options, the truth);
- ``think``: the real task with ``sft.think: option``'s completion
  ``<think>Yes</think><answer>B</answer>``: the model first states its finding (the correct
  option's text), then the letter; ``finding`` is the held-out share whose greedy think word is
  right, the accuracy the letter chosen after the model's own word.

``--read-options`` first gives the random model the demo's text-only option-reading drills
(:mod:`training.offline_pretrain`): without them the letter stays at chance in every task whose
options are shuffled, since it is an exclusive-or of option order and finding that gradient
descent does not start to learn from random weights; with them the letter follows the finding.

``--emit-module`` gives the model EMIT's comparison module (as the demo recipe: layers 1-2,
k = 1, 8 x 8 heat map, 9 soft-prompt tokens), so the heat map between the normal reference and
the query reaches the language model.

``--learning-set N`` also scores, at every evaluation, the demo's held-out learning set
(:mod:`eval.learning_set`: N anomaly-detection questions on another synthetic draw of MMAD's
DS-MVTec categories, half defect-free), asked in the same short form with options shuffled
by a seeded coin: whether what the model learns on the training datasets' drawings carries
over to DS-MVTec's.

The prompt is the question and its options after the two images (the domain-knowledge text is
left out to keep CPU steps short). Accuracy is the held-out share whose reference letter gets
the higher logit at the answer position; ``constant`` says the model answered one letter for
every question. Prints a table per task, writes ``learnability.json`` and ``learnability.png``
into ``--out``.

    IAD_PROFILE=demo python bench/bench_learnability.py --steps 400 --read-options --emit-module
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS = ("binding", "vision", "full", "think")
FIXED_OPTIONS = "A. Yes.\nB. No.\n"


def scaled_model(hidden: int, layers: int, vision_hidden: int, vision_depth: int, seed: int):
    """A random Qwen2.5-VL with the tiny model's tokenizer and shape rules, scaled up."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from training import tiny_model as tm

    tokenizer = tm.build_tokenizer()
    half = hidden // 4 // 2  # head_dim / 2, split over M-RoPE's (time, height, width)
    side = half * 3 // 8
    text = tm.TINY_TEXT | {
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "max_window_layers": layers,
        "rope_parameters": tm.TINY_TEXT["rope_parameters"]
        | {"mrope_section": [half - 2 * side, side, side]},
    }
    vision = tm.TINY_VISION | {
        "hidden_size": vision_hidden,
        "intermediate_size": 2 * vision_hidden,
        "depth": vision_depth,
        "out_hidden_size": hidden,
        "fullatt_block_indexes": [vision_depth - 1],
    }
    saved = tm.TINY_TEXT, tm.TINY_VISION
    tm.TINY_TEXT, tm.TINY_VISION = text, vision
    try:
        config = tm.model_config(tokenizer)
    finally:
        tm.TINY_TEXT, tm.TINY_VISION = saved
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration._from_config(config)
    processor = tm.Qwen2_5_VLImageOnlyProcessor(
        image_processor=tm.Qwen2VLImageProcessorPil(**tm.TINY_PIXELS),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    return model, processor


def with_module(model, processor, rows: list[dict]) -> None:
    """Attach EMIT's comparison module (the demo recipe's settings) and mark the rows' prompts
    with its placeholder."""
    from iad_pipeline.models.emit.model import attach_emit_module
    from iad_pipeline.models.emit.prompts import add_hint_placeholder
    from training.config import load_recipe

    settings = load_recipe("demo").emit_module
    attach_emit_module(model, settings, processor.tokenizer)
    for row in rows:
        turn = row["prompt"][0]
        turn["content"] = add_hint_placeholder(
            turn["content"], task="anomaly_detection", n_images=2, settings=settings
        )


def task_rows(rows: list[dict], task: str) -> list[dict]:
    """The questions of one task: prompt = images + question/options, and its answer."""
    out = []
    for row in rows:
        content = row["prompt"][0]["content"]
        images = [b for b in content if b["type"] == "image"]
        text = "".join(b["text"] or "" for b in content if b["type"] == "text")
        question = text.split("Question:")[-1]
        yes = re.search(r"([AB])\. Yes", question).group(1)
        truth = "Yes" if row["solution"] == yes else "No"
        word = "Yes" if row["solution"] == yes else "No"
        if task == "binding":
            answer = yes
        elif task == "vision":
            question = question.split("A.")[0] + FIXED_OPTIONS
            answer = "A" if truth == "Yes" else "B"
        else:
            answer = row["solution"]
        block = {"type": "text", "text": question}
        prompt = [{"role": "user", "content": [{"type": "image"} for _ in images] + [block]}]
        out.append({"prompt": prompt, "images": row["images"], "answer": answer, "word": word})
    return out


def majority_of(rows: list[dict]) -> float:
    """The share of the more common answer letter: what a constant answer scores."""
    return max(sum(r["answer"] == x for r in rows) for x in "AB") / len(rows)


def learning_rows(n: int, seed: int, folder: Path) -> list[dict]:
    """The held-out learning set (:func:`eval.learning_set.write_learning_set`) as
    :func:`task_rows` ``think`` rows: normal reference and query, the short question, options
    in a seeded random order."""
    from PIL import Image

    from eval.learning_set import write_learning_set

    learning = write_learning_set(folder, n=n)
    rng = random.Random(seed)
    rows = []
    for r in learning.questions.iter_rows(named=True):
        options = ("Yes", "No") if rng.random() < 0.5 else ("No", "Yes")
        text = f" Is there any defect in the object? \nA. {options[0]}.\nB. {options[1]}.\n"
        content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": text}]
        images = [Image.open(r[k]).convert("RGB") for k in ("reference_image", "image_path")]
        rows.append(
            {
                "prompt": [{"role": "user", "content": content}],
                "images": images,
                "answer": "AB"[options.index(r["finding"])],
                "word": r["finding"],
            }
        )
    return rows


class Learner:
    """Supervised fine-tuning of one model on one task, with held-out letter accuracy."""

    def __init__(self, model, processor, lr: float, think: bool = False):
        import torch

        self.think = think
        self.model, self.processor = model, processor
        self.tok = processor.tokenizer
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)

    def _prompt(self, row: dict) -> str:
        return self.processor.apply_chat_template(row["prompt"], add_generation_prompt=True)

    def step(self, rows: list[dict]) -> float:
        import torch

        from training.sft import answer_completion

        prompts = [self._prompt(r) for r in rows]
        texts = [
            p
            + answer_completion("emit", r["answer"], r["word"] if self.think else "")
            + "<|im_end|>"
            for p, r in zip(prompts, rows, strict=True)
        ]
        self.tok.padding_side = "right"
        images = [r["images"] for r in rows]
        enc = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        for i, (p, r) in enumerate(zip(prompts, rows, strict=True)):
            labels[i, : len(self.processor(text=[p], images=[r["images"]])["input_ids"][0])] = -100
        loss = self.model(**enc, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad()
        return loss.item()

    def _choose(self, texts: list[str], rows: list[dict], choices: tuple[str, str]) -> list[int]:
        """Greedy choice between two continuations of each text: 0 or 1 per row.

        Each text is tokenized with each continuation appended, as the model saw it in
        training (the byte-level BPE merges across the seam: ``<answer>B`` is ``>B``, never
        ``>`` then ``B``), and the two token sequences are compared at their first differing
        token, scored by the logit the model gives each there after the common prefix."""
        self.tok.padding_side = "right"
        images = [r["images"] for r in rows]
        encs = [
            self.processor(
                text=[t + c for t in texts], images=images, return_tensors="pt", padding=True
            )
            for c in choices
        ]
        logits = self.model(**encs[0]).logits
        picks = []
        for i in range(len(rows)):
            ids = [e["input_ids"][i][e["attention_mask"][i] == 1].tolist() for e in encs]
            k = next(j for j, (a, b) in enumerate(zip(*ids, strict=False)) if a != b)
            row = logits[i, k - 1]
            picks.append(0 if row[ids[0][k]] >= row[ids[1][k]] else 1)
        return picks

    def accuracy(self, rows: list[dict]) -> tuple[float, bool, float | None]:
        """Held-out accuracy, whether every answer was the same letter, and (``think``) the
        share of right findings."""
        import torch

        from training.sft import answer_completion

        self.model.eval()
        picks, words = [], []
        with torch.no_grad():
            for start in range(0, len(rows), 16):
                batch = rows[start : start + 16]
                texts = [self._prompt(r) for r in batch]
                said = [""] * len(batch)
                if self.think:
                    pair = ("<think>Yes</think>", "<think>No</think>")
                    said = [("Yes", "No")[i] for i in self._choose(texts, batch, pair)]
                    words += said
                texts = [
                    t + answer_completion("emit", "A", w).split("<answer>")[0] + "<answer>"
                    for t, w in zip(texts, said, strict=True)
                ]
                picks += ["AB"[i] for i in self._choose(texts, batch, ("A</answer>", "B</answer>"))]
        self.model.train()
        correct = sum(p == r["answer"] for p, r in zip(picks, rows, strict=True))
        found = (
            sum(w == r["word"] for w, r in zip(words, rows, strict=True)) / len(rows)
            if self.think
            else None
        )
        return correct / len(rows), len(set(picks)) == 1, found


def main(argv=None) -> int:

    from bench.demo_questions import demo_ad_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training-set", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "learnability")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vision-hidden", type=int, default=64)
    parser.add_argument("--vision-depth", type=int, default=2)
    parser.add_argument("--held-out", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--learning-set",
        type=int,
        default=0,
        metavar="N",
        help="also score the demo's held-out DS-MVTec learning set of N questions (think task)",
    )
    parser.add_argument("--emit-module", action="store_true", help="EMIT's heat-map module")
    parser.add_argument(
        "--read-options",
        action="store_true",
        help="first the option-reading drills the demo's small model gets "
        "(training/offline_pretrain.py)",
    )
    args = parser.parse_args(argv)
    _, train_rows, test_rows = demo_ad_split(
        args.training_set, args.held_out, args.seed, module=False
    )
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "tasks": {}}
    other = (
        learning_rows(args.learning_set, args.seed, args.out / "learning_set")
        if args.learning_set
        else []
    )
    for task in args.tasks:
        train = task_rows(list(train_rows), task)
        test = task_rows(list(test_rows), task)
        model, processor = scaled_model(
            args.hidden, args.layers, args.vision_hidden, args.vision_depth, args.seed
        )
        if args.read_options:
            from training.offline_pretrain import pretrain_option_reading

            drills = pretrain_option_reading(model, processor.tokenizer, seed=args.seed)
            print(
                f"{task:<8} option-reading drills: held-out "
                f"{100 * drills['accuracy_before']:.1f}% -> {100 * drills['accuracy_after']:.1f}%",
                flush=True,
            )
        transfer = other if task == "think" else []
        if args.emit_module:
            with_module(model, processor, train + test + transfer)
        learner = Learner(model, processor, args.lr, think=task == "think")
        majority = majority_of(test)
        curve, order, began = [], list(range(len(train))), time.perf_counter()
        rng = random.Random(args.seed)
        acc, constant, found = learner.accuracy(test)
        curve.append(
            {"step": 0, "accuracy": acc, "constant": constant, "finding": found, "loss": None}
        )
        loss = float("nan")
        for step in range(1, args.steps + 1):
            if (step - 1) * args.batch % len(order) < args.batch:
                rng.shuffle(order)
            at = (step - 1) * args.batch % len(order)
            loss = learner.step([train[i] for i in (order + order)[at : at + args.batch]])
            if step % args.eval_every == 0 or step == args.steps:
                acc, constant, found = learner.accuracy(test)
                point = {
                    "step": step,
                    "accuracy": acc,
                    "constant": constant,
                    "finding": found,
                    "loss": loss,
                }
                line = ""
                if transfer:
                    point["learning_set"], _, point["learning_set_finding"] = learner.accuracy(
                        transfer
                    )
                    line = (
                        f"  learning set {100 * point['learning_set']:5.1f}% "
                        f"(finding {100 * point['learning_set_finding']:5.1f}%, "
                        f"n = {len(transfer)}, majority letter "
                        f"{100 * majority_of(transfer):.1f}%)"
                    )
                curve.append(point)
                print(
                    f"{task:<8} step {step:>5}  loss {loss:.3f}  held-out {100 * acc:5.1f}%"
                    + (f"  finding {100 * found:5.1f}%" if found is not None else "")
                    + ("  (one letter)" if constant else "")
                    + line,
                    flush=True,
                )
        results["tasks"][task] = {
            "curve": curve,
            "majority": majority,
            "finding_majority": max(sum(r["word"] == w for r in test) for w in ("Yes", "No"))
            / len(test),
            "n_train": len(train),
            "n_held_out": len(test),
            "s_per_step": (time.perf_counter() - began) / max(args.steps, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    print(
        f"\n{'task':<9}{'params':>9}{'n':>6}{'majority %':>12}"
        f"{'best %':>9}{'last %':>9}{'s/step':>8}{'finding last %':>16}{'finding major. %':>18}"
    )
    for task, r in results["tasks"].items():
        accs = [c["accuracy"] for c in r["curve"]]
        found = r["curve"][-1]["finding"]
        print(
            f"{task:<9}{r['parameters']:>9,}{r['n_held_out']:>6}{100 * r['majority']:>12.1f}"
            f"{100 * max(accs):>9.1f}{100 * accs[-1]:>9.1f}{r['s_per_step']:>8.2f}"
            + (
                f"{100 * found:>16.1f}{100 * r['finding_majority']:>18.1f}"
                if found is not None
                else ""
            )
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learnability.json").write_text(json.dumps(results, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for task, r in results["tasks"].items():
        steps = [c["step"] for c in r["curve"]]
        ax.plot(steps, [100 * c["accuracy"] for c in r["curve"]], label=task)
        if r["curve"][-1]["finding"] is not None:
            found = [100 * c["finding"] for c in r["curve"]]
            ax.plot(steps, found, linestyle="--", label=f"{task}: finding")
    ax.axhline(50, color="grey", linestyle=":", label="chance")
    ax.set(xlabel="SFT step", ylabel="held-out accuracy %", title="what the random model learns")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "learnability.png", dpi=100)
    print(f"wrote {args.out / 'learnability.json'} and {args.out / 'learnability.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
