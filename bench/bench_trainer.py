"""Benchmark: DifficultyAwareGRPOTrainer against plain ``trl.GRPOTrainer`` on the tiny Qwen2.5-VL.

Each run is its own process (same seed, data and scripted rewards): plain TRL and ours with
reweighting on and resampling off, alternating twice, then ours with resampling on (3
rounds). Completions have a fixed 32 tokens, so every run does the same model work. Prints,
from one run, each ``trainer.train()``'s wall and CPU time, the ratios ours/TRL (target
<= 1.10), each process's peak RSS, and the generate calls and resampling rounds. CPU time is
the steadier measure on a shared machine; children run torch with one thread
(``--threads``) because the tiny model gains nothing from more, and on a busy 2-core machine
spinning OpenMP workers turn a neighbour's load into multi-second stalls. The accuracy
reward accepts about one completion in five, so about 40% of groups start unsolved.

    python bench/bench_trainer.py [--steps 20] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTHS = (14, 14, 9, 9, 6)  # table columns after the variant name
VARIANTS = {
    "trl": "plain trl.GRPOTrainer",
    "ours": "ours: reweight, no resampling",
    "ours+resample": "ours: reweight, resample 3 rounds",
}


def accuracy(completions: list, **kwargs) -> list[float]:
    """Pseudo-accuracy for a random model: the decoded length is divisible by 5."""
    return [1.0 if len(c[0]["content"]) % 5 == 0 else 0.0 for c in completions]


def brevity(completions: list, **kwargs) -> list[float]:
    return [1.0 - len(c[0]["content"]) / 200 for c in completions]


def child(variant: str, model_dir: str, steps: int) -> None:
    """Train ``steps`` steps of ``variant`` and print one JSON line of measurements."""
    from datasets import Dataset
    from datasets import Image as ImageFeature
    from PIL import Image
    from trl import GRPOConfig, GRPOTrainer

    from iad_pipeline.models.processors import load_model_and_processor
    from training.trainer import DifficultyAwareGRPOTrainer, DifficultyConfig

    n = 16
    dataset = Dataset.from_dict(
        {
            "prompt": [
                [{"role": "user", "content": f"Is there any anomaly in part {i}?"}]
                for i in range(n)
            ],
            "image": [Image.new("RGB", (64, 64), (15 * i, 90, 120)) for i in range(n)],
            "solution": ["A"] * n,
        }
    ).cast_column("image", ImageFeature())
    model, processor = load_model_and_processor(model_dir)
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out,
            use_cpu=True,
            bf16=False,
            gradient_checkpointing=False,
            per_device_train_batch_size=8,
            num_generations=4,
            max_completion_length=32,
            # Fixed-length completions: the runs' trajectories diverge after the first update,
            # and with free lengths the time would follow the sampled lengths, not the trainer.
            generation_kwargs={"min_new_tokens": 32},
            max_steps=steps,
            learning_rate=1e-3,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=0,
        )
        common = {"reward_funcs": [accuracy, brevity], "args": args, "train_dataset": dataset}
        common |= {"model": model, "processing_class": processor}
        if variant == "trl":
            trainer = GRPOTrainer(**common)
        else:
            rounds = 3 if variant == "ours+resample" else 0
            trainer = DifficultyAwareGRPOTrainer(
                **common, difficulty=DifficultyConfig(resample_rounds=rounds)
            )
        calls = [0]
        generate = trainer._generate_single_turn

        def counting(*a, **k):
            calls[0] += 1
            return generate(*a, **k)

        trainer._generate_single_turn = counting
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train()
        train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    history = trainer.state.log_history
    print(
        json.dumps(
            {
                "train_s": train_s,
                "cpu_s": cpu_s,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "generate_calls": calls[0],
                "resample_rounds": sum(e.get("difficulty/resample_rounds", 0) for e in history),
                "unsolved_groups": sum(e.get("difficulty/unsolved_groups", 0) for e in history),
            }
        )
    )


def run(variant: str, model_dir: Path, steps: int, threads: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--model",
        str(model_dir),
        "--steps",
        str(steps),
    ]
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result | {"process_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per child")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.steps)
        return

    from training.tiny_model import build_tiny_qwen25vl

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_qwen25vl(Path(tmp) / "tiny", seed=0)
        results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for _ in range(args.repeats):
            for variant in ("trl", "ours"):
                results[variant].append(run(variant, model_dir, args.steps, args.threads))
        results["ours+resample"].append(run("ours+resample", model_dir, args.steps, args.threads))

    print(
        f"tiny Qwen2.5-VL, {args.steps} steps of 2 prompts x 4 completions (32 tokens), "
        f"{os.cpu_count()} cores, {args.threads} torch thread(s) per run"
    )
    header = ("train wall s", "train CPU s", "peak RSS", "gen calls", "rounds")
    print(f"{'variant':34s} " + " ".join(f"{h:>{w}s}" for h, w in zip(header, WIDTHS, strict=True)))
    for variant, label in VARIANTS.items():
        runs = results[variant]
        cells = (
            " ".join(f"{r['train_s']:.2f}" for r in runs),
            " ".join(f"{r['cpu_s']:.2f}" for r in runs),
            f"{max(r['peak_rss_mib'] for r in runs):.0f} MiB",
            str(runs[-1]["generate_calls"]),
            f"{runs[-1]['resample_rounds']:.0f}",
        )
        print(f"{label:34s} " + " ".join(f"{c:>{w}s}" for c, w in zip(cells, WIDTHS, strict=True)))
    print("target: ours/trl <= 1.10")
    for key, name in (("cpu_s", "CPU"), ("train_s", "wall")):
        ours = statistics.mean(r[key] for r in results["ours"])
        trl = statistics.mean(r[key] for r in results["trl"])
        best = min(r[key] for r in results["ours"]) / min(r[key] for r in results["trl"])
        print(f"time ratio ours/trl ({name}): {ours / trl:.3f} (means), {best:.3f} (best runs)")
    resample = results["ours+resample"][-1]
    trl_cpu = statistics.mean(r["cpu_s"] for r in results["trl"])
    print(
        f"with resampling: {resample['cpu_s'] / trl_cpu:.2f}x trl's CPU time, "
        f"{resample['resample_rounds']:.0f} rounds over {args.steps} steps, "
        f"{resample['unsolved_groups']:.0f} groups still unsolved"
    )


if __name__ == "__main__":
    main()
