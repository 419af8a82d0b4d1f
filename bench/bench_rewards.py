"""Benchmark: every registered reward on a GRPO batch of 64 realistic completions.

Each completion has about 300 tokens: a ``<think>`` block of inspection prose with one to three
boxes ``[x1, y1, x2, y2]``, a ``<rethink>`` block and an ``<answer>``, passed as TRL passes
them (conversational message lists, ``solution``, ``boxes`` and ``completion_ids`` columns;
8 prompts x ``num_generations`` 8). Times the median of ``--repeats`` calls per reward and
their sum, then compares that sum with a GRPO step:

- GPU: VLM-R1's Qwen2.5-VL-3B GRPO on 8 x A100, about 25 s per step (the low end of the
  25-30 s in /work/shared/reference/anchors.md, section A), taken as the time of one batch;
- CPU: the tiny Qwen2.5-VL step of the test suite, about 0.17 s per step for 8 completions
  (/work/shared/reference/trl-grpo.md, section 2), compared with the rewards' cost for
  8 completions (the 64-completion time x 8 / 64).

    python bench/bench_rewards.py [--repeats 30] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from training.rewards import REWARDS, get_reward

GPU_STEP_S = 25.0
CPU_STEP_S = 0.17
CPU_STEP_COMPLETIONS = 8
GROUP = 8
PROSE = (
    "the surface of the bottle shows a faint scratch near the rim while the label area looks "
    "clean and the cap thread is intact but a small dark spot appears on the lower left side "
    "which could be contamination or a reflection from the lighting compared with the normal "
    "template the texture is uniform except for this region so I inspect it more closely"
)
WORDS = PROSE.split()


def completion(rng: np.random.Generator) -> tuple[str, list[list[int]], int]:
    """One completion of about 300 tokens, its boxes and its token count."""
    n_boxes = int(rng.integers(1, 4))
    boxes = []
    for _ in range(n_boxes):
        x, y = (int(v) for v in rng.integers(0, 440, size=2))
        w, h = (int(v) for v in rng.integers(8, 64, size=2))
        boxes.append([x, y, x + w, y + h])
    prose = " ".join(rng.choice(WORDS, size=165))
    spots = " and ".join(str(b) for b in boxes)
    think = f"{prose[:400]} Suspicious regions: {spots}. {prose[400:]}"
    rethink = " ".join(rng.choice(WORDS, size=45))
    answer = str(rng.choice(["A", "B", "C", "D", "a", "b"]))
    text = f"<think>{think}</think>\n<rethink>{rethink}</rethink>\n<answer>{answer}</answer>"
    n_tokens = int(len(text) / 4.2)  # about 4 characters per token for English prose
    return text, boxes, n_tokens


def batch(n: int, seed: int = 0) -> tuple[list, dict]:
    """``n`` conversational completions and the columns TRL would pass with them."""
    rng = np.random.default_rng(seed)
    texts, gts, ids, solutions = [], [], [], []
    for i in range(n):
        text, boxes, n_tokens = completion(rng)
        texts.append([{"role": "assistant", "content": text}])
        anomalous = (i // GROUP) % 2 == 0
        gts.append(boxes[:1] if anomalous else [])
        solutions.append("A" if anomalous else "B")
        ids.append(list(range(n_tokens)))
    return texts, {"solution": solutions, "boxes": gts, "completion_ids": ids}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    completions, columns = batch(args.batch)
    tokens = statistics.mean(len(i) for i in columns["completion_ids"])
    chars = statistics.mean(len(c[0]["content"]) for c in completions)
    print(
        f"{args.batch} completions, mean {tokens:.0f} tokens ({chars:.0f} characters), "
        f"median of {args.repeats} calls, {os.cpu_count()} cores"
    )
    times: dict[str, float] = {}
    for name in REWARDS:
        reward = get_reward(name, **({"num_generations": GROUP} if name == "focal" else {}))
        reward(completions, **columns)  # warm-up
        samples = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            reward(completions, **columns)
            samples.append(time.perf_counter() - t0)
        times[name] = statistics.median(samples)

    total = sum(times.values())
    print(f"{'reward':22s} {'ms/batch':>9s} {'us/completion':>14s}")
    for name, seconds in times.items():
        print(f"{name:22s} {seconds * 1e3:9.3f} {seconds / args.batch * 1e6:14.1f}")
    print(f"{'total':22s} {total * 1e3:9.3f} {total / args.batch * 1e6:14.1f}")
    per_cpu_step = total * CPU_STEP_COMPLETIONS / args.batch
    print(
        f"share of a GPU step ({GPU_STEP_S:.0f} s, VLM-R1 3B on 8xA100): "
        f"{total / GPU_STEP_S * 100:.4f} % (target < 1 %)"
    )
    print(
        f"share of the tiny CPU step ({CPU_STEP_S} s, {CPU_STEP_COMPLETIONS} completions): "
        f"{per_cpu_step / CPU_STEP_S * 100:.2f} % ({per_cpu_step * 1e3:.2f} ms for "
        f"{CPU_STEP_COMPLETIONS} completions)"
    )


if __name__ == "__main__":
    main()
