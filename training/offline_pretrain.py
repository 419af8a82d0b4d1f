"""Option reading for the offline ``small`` model: a short text-only pre-training.

A real base model (Qwen2.5-VL-Instruct) arrives able to read a multiple-choice question: told
the answer is "Yes", it writes the letter the options put beside "Yes". A model with random
weights cannot, and cannot learn it from the anomaly-detection task either: there the letter
is an exclusive-or of the option order and the finding, neither of which predicts the letter
on its own, so the gradient that would start the lookup is zero and SFT memorises training
letters instead (bench/bench_learnability.py measured it). This module gives the offline
model that skill before it sees a single image, so the demo measures what it should: whether
the model learns to *see* defects.

The drills are two-option Yes/No questions rendered exactly as the pipeline renders them (the
tokenizer's chat template, the options as ``"A. Yes.\\nB. No.\\n"`` after the question, random
filler words before it) with the completion ``<think>{word}</think><answer>{letter}</answer>``:
the think word is drawn at random, and the letter is the option that says it. Nothing about
images, defects or the datasets is in them. Training runs a curriculum, because gradient
descent does not find the exclusive-or from random weights: first the think word is always
"Yes" (the letter of the "Yes" option: a lookup with a direct gradient), then both words, which
turns the lookup into one that follows the think word. The model's held-out accuracy on fresh
drills is returned (and written beside the weights by
:func:`training.tiny_model.build_tiny_qwen25vl`).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import torch

from iad_pipeline.questions.prompts import format_question
from training.sft import answer_completion

logger = logging.getLogger(__name__)

# Bump when the drills or the curriculum change: a model folder pre-trained with another
# version is built again (training.model_setup.offline_qwen).
DRILL_VERSION = 1
LEARNING_RATE = 1e-3
FILLER = (  # noqa: SIM905 (a word list, read as prose)
    "the a of in on with surface object image part region left right top bottom center edge "
    "corner area texture color shape line mark spot metal plastic wood fabric glass cable "
    "screw pill bottle board print label normal sample product inspection view light dark"
).split()
QUESTIONS = (
    "Is there any defect in the object?",
    "Is there any anomaly in the image?",
    "Does the object have a defect?",
    "Is the product defective?",
)
WORDS = ("Yes", "No")


@dataclass(frozen=True)
class Drill:
    """One question: the user text, the think word and the letter of the option saying it."""

    text: str
    word: str
    letter: str


def make_drill(rng: random.Random, *, bind_only: bool, max_filler: int) -> Drill:
    """A random two-option drill; ``bind_only`` makes the think word "Yes"."""
    options = list(WORDS) if rng.random() < 0.5 else list(reversed(WORDS))
    word = "Yes" if bind_only else rng.choice(WORDS)
    filler = " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, max_filler)))
    question = format_question(rng.choice(QUESTIONS), [f"{o}." for o in options])
    text = f"{filler} {question}" if filler else question
    return Drill(text, word, "AB"[options.index(word)])


def _encode(tokenizer, drills: list[Drill], *, completion: bool = True):
    """Right-padded ids, attention mask and completion-only labels of ``drills``."""
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": d.text}], tokenize=False, add_generation_prompt=True
        )
        for d in drills
    ]
    ids, starts = [], []
    for prompt, d in zip(prompts, drills, strict=True):
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if completion:
            text = prompt + answer_completion("emit", d.letter, d.word) + "<|im_end|>"
            ids.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            ids.append(head)
        starts.append(len(head))
    width = max(map(len, ids))
    x = torch.full((len(ids), width), tokenizer.pad_token_id)
    labels = torch.full((len(ids), width), -100)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, (row, start) in enumerate(zip(ids, starts, strict=True)):
        x[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, start : len(row)] = torch.tensor(row[start:])
    return x, mask, labels


def _logits(model, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Text-only forward through the language model (positions 0..n on all three M-RoPE axes,
    which is what Qwen2.5-VL computes for a prompt without images)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0).expand(3, -1, -1)
    hidden = model.model.language_model(
        input_ids=x, attention_mask=mask, position_ids=positions
    ).last_hidden_state
    return model.lm_head(hidden)


def drill_accuracy(model, tokenizer, drills: list[Drill]) -> float:
    """Share of ``drills`` where, after its think word, the model puts the higher logit on the
    letter of the option saying that word (of the two letters)."""
    letters = [tokenizer(f"<answer>{c}", add_special_tokens=False)["input_ids"][-1] for c in "AB"]
    was_training = model.training
    model.eval()
    right = 0
    with torch.no_grad():
        for start in range(0, len(drills), 64):
            batch = drills[start : start + 64]
            x, mask, _ = _encode(tokenizer, batch)
            logits = _logits(model, x, mask)
            for i, d in enumerate(batch):
                at = next(j for j in range(x.shape[1]) if x[i, j].item() in letters)
                pick = "AB"[int(logits[i, at - 1, letters].argmax())]
                right += pick == d.letter
    model.train(was_training)
    return right / len(drills)


def pretrain_option_reading(
    model,
    tokenizer,
    *,
    steps: int = 600,
    bind_steps: int = 300,
    batch: int = 32,
    seed: int = 0,
    held_out: int = 200,
) -> dict:
    """Train ``model`` (a Qwen2.5-VL) in place on option-reading drills; returns what was run
    and the held-out accuracy before and after.

    The first ``bind_steps`` steps use "Yes" as the think word, the rest both words. Training
    drills have no filler before the question; the held-out ones up to 40 words, so the
    accuracy measured is that of contexts longer than the trained ones.
    """
    if not 0 <= bind_steps <= steps:
        msg = f"bind_steps={bind_steps} must lie between 0 and steps={steps}"
        raise ValueError(msg)
    rng = random.Random(seed)
    test = [
        make_drill(random.Random(f"held-out-{seed}-{i}"), bind_only=False, max_filler=40)
        for i in range(held_out)
    ]
    before = drill_accuracy(model, tokenizer, test)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(1, steps + 1):
        drills = [make_drill(rng, bind_only=step <= bind_steps, max_filler=0) for _ in range(batch)]
        x, mask, labels = _encode(tokenizer, drills)
        logits = _logits(model, x, mask)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0:
            logger.info("option reading: step %d/%d, loss %.3f", step, steps, loss.item())
    model.eval()
    after = drill_accuracy(model, tokenizer, test)
    return {
        "drill_version": DRILL_VERSION,
        "steps": steps,
        "bind_steps": bind_steps,
        "batch": batch,
        "learning_rate": LEARNING_RATE,
        "seed": seed,
        "held_out": held_out,
        "accuracy_before": before,
        "accuracy_after": after,
        "final_loss": round(loss.item(), 4),
    }
