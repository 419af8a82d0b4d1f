"""Benchmark: batched, image-grouped evaluation against MMAD's one-question-per-call loop.

The same questions of a synthetic MMAD (``synthesize("mmad")``, 1-shot with the first random
template, MMAD's prompt) are answered three ways by the tiny random Qwen2.5-VL of
:mod:`training.tiny_model`, on whatever device is there (CPU in CI):

- **MMAD loop**: what MMAD's ``qwen2_5_vl_query.py`` does, one ``generate`` call per question
  (batch 1, ``max_new_tokens`` 128, greedy), every image processed for every question;
- **ours, generate**: :func:`eval.runner.evaluate` with the transformers backend, batches of 8
  with the questions of an image together, each distinct image preprocessed and encoded once
  per batch, answers appended to the store after every batch;
- **ours, letter_logits**: the same runner, one forward pass per batch scoring the option
  letters (no generation).

Reported: questions per second and the ratio to the MMAD loop (target for generate: >= 4).
The tiny model never emits its end token, so every generated answer is 128 tokens long in
both loops: the comparison is generation-bound, as a real run with long answers would be.
Each backend answers one warm-up question first, untimed.

    python bench/bench_inference.py [--questions 200] [--batch 8] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from eval.backends.transformers_backend import TransformersBackend
from eval.mmad_files import mmad_templates
from eval.prompting import PromptSources, build_prompt
from eval.protocols import Protocol
from eval.runner import RunInfo, evaluate
from eval.store import AnswerStore
from iad_pipeline.questions.mmad_json import read_mmad_json
from iad_pipeline.synthetic import synthesize
from training.tiny_model import build_tiny_qwen25vl

TARGET = 4.0


def mmad_loop(backend: TransformersBackend, questions: pl.DataFrame, templates, root) -> float:
    """MMAD's loop: one prompt built and answered per call; returns the seconds."""
    protocol = Protocol()
    start = time.perf_counter()
    for row in questions.iter_rows(named=True):
        spec = build_prompt(row, protocol, templates, None, root)
        backend.answer([spec])
    return time.perf_counter() - start


def ours(backend, questions, templates, root, store_dir: Path, batch: int) -> float:
    """Our runner, from an empty store; returns the seconds."""
    run = RunInfo("tiny-qwen25vl", "", backend.name, Protocol())
    start = time.perf_counter()
    answers = evaluate(
        questions,
        backend,
        AnswerStore(store_dir),
        run=run,
        sources=PromptSources(templates, image_root=root),
        batch_size=batch,
        progress=False,
    )
    seconds = time.perf_counter() - start
    if answers.height != questions.height:
        msg = f"{backend.name}: {answers.height} answers for {questions.height} questions"
        raise RuntimeError(msg)
    return seconds


def warm_up(backend: TransformersBackend, questions: pl.DataFrame, templates, root) -> None:
    backend.answer([build_prompt(questions.row(0, named=True), Protocol(), templates, None, root)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    model_dir = build_tiny_qwen25vl(work / "tiny")
    root = work / "ALL_DATA"
    synthesize("mmad", root, per_class=2, size=128)
    questions = read_mmad_json(root / "mmad.json", root).head(args.questions)
    templates = mmad_templates(root / "mmad.json")
    n, images = questions.height, questions["image_path"].n_unique()
    tokens = args.max_new_tokens

    baseline = TransformersBackend(
        model_dir, batch_size=1, max_new_tokens=tokens, share_images=False
    )
    batched = TransformersBackend(model_dir, batch_size=args.batch, max_new_tokens=tokens)
    letters = TransformersBackend(model_dir, batch_size=args.batch, mode="letter_logits")
    for backend in (baseline, batched, letters):
        warm_up(backend, questions, templates, root)

    rows = [
        ("MMAD loop (generate)", 1, mmad_loop(baseline, questions, templates, root)),
        (
            "ours (generate)",
            args.batch,
            ours(batched, questions, templates, root, work / "a", args.batch),
        ),
        (
            "ours (letter_logits)",
            args.batch,
            ours(letters, questions, templates, root, work / "b", args.batch),
        ),
    ]
    base_qps = n / rows[0][2]
    print(
        f"{n} questions on {images} images, 1-shot, max_new_tokens={tokens}, device="
        f"{batched.device}, torch threads={torch.get_num_threads()}, "
        f"load average={os.getloadavg()[0]:.1f}"
    )
    print(f"{'mode':<24}{'batch':>6}{'seconds':>10}{'q/s':>9}{'x MMAD':>9}")
    for mode, batch, seconds in rows:
        qps = n / seconds
        print(f"{mode:<24}{batch:>6}{seconds:>10.1f}{qps:>9.2f}{qps / base_qps:>9.1f}")
    ratio = rows[1][2] and rows[0][2] / rows[1][2]
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"generate speed-up {ratio:.1f}x (target >= {TARGET:g}x: {verdict})")


if __name__ == "__main__":
    main()
