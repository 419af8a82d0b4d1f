"""Benchmark: evaluation on Ray Data actors and training on Ray Train workers, against one process.

**Evaluation.** The questions of a synthetic MMAD (``synthesize("mmad")``, 1-shot, MMAD's
prompt) are answered by the tiny random Qwen2.5-VL through :func:`eval.runner.evaluate`:

- in process: the batched transformers backend, with torch's default threads and with one
  thread (what a Ray actor reserving one CPU gets: Ray sets ``OMP_NUM_THREADS``);
- on Ray: the Ray backend with 1 and with 2 actors (one CPU each) on a local cluster.

Each Ray evaluation is one Ray Data pipeline: its actors start and load the model, then
answer. Reported: questions per second end to end and steady (from the arrival of the first
answered batch to the last: start-up and model loading excluded), the overhead of 1 actor
against one process of the same threads (target <= 1.2x) and the scaling from 1 to 2 actors.

**Training.** The demo recipe on the tiny model, ``python -m training.grpo`` against
``python -m training.ray_train run --workers 2`` (gloo, a local cluster): the time per step is
the difference of a 2-step and a ``2 + N``-step run divided by N (so start-up cancels). Two
workers train on twice the prompts per step (each rank its own batch), so prompts per second
is reported too.

    nice python bench/bench_ray.py [--questions 148] [--steps 20] [--skip-eval|--skip-training]

No GPU was available where this was written: the GPU figures (tiny and full-size random
Qwen2.5-VL-3B) are still to be measured (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster of this process only
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from eval.backends.ray_backend import RayBackend  # noqa: E402
from eval.backends.transformers_backend import TransformersBackend  # noqa: E402
from eval.mmad_files import mmad_templates  # noqa: E402
from eval.prompting import PromptSources  # noqa: E402
from eval.protocols import Protocol  # noqa: E402
from eval.runner import RunInfo, answer_batches, evaluate  # noqa: E402
from eval.store import AnswerStore  # noqa: E402
from iad_pipeline.questions.mmad_json import read_mmad_json  # noqa: E402
from iad_pipeline.synthetic import synthesize  # noqa: E402
from training.tiny_model import build_tiny_qwen25vl  # noqa: E402

TARGET_OVERHEAD = 1.2
BATCH = 8
MAX_NEW_TOKENS = 32


class Timed:
    """A backend wrapper noting when each batch's answers arrive (the runner drives it)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.model = inner, inner.name, inner.model
        self.arrivals: list[tuple[float, int]] = []

    def answer(self, prompts, max_new_tokens=None):
        return self.inner.answer(prompts, max_new_tokens)

    def answer_batches(self, spec_batches):
        for item in answer_batches(self.inner, spec_batches):
            self.arrivals.append((time.perf_counter(), len(spec_batches[item[0]])))
            yield item

    def steady_rate(self) -> float:
        """Questions per second after the first batch arrived (start-up and load excluded)."""
        (first, _), (last, _) = self.arrivals[0], self.arrivals[-1]
        return sum(n for _, n in self.arrivals[1:]) / max(last - first, 1e-9)


def timed_eval(backend, questions: pl.DataFrame, root: Path, store: Path) -> tuple[float, float]:
    """(end-to-end questions per second, steady questions per second) of one evaluation."""
    timed = Timed(backend)
    run = RunInfo("tiny", "", backend.name, Protocol())
    start = time.perf_counter()
    answers = evaluate(
        questions,
        timed,
        AnswerStore(store),
        run=run,
        sources=PromptSources(mmad_templates(root / "mmad.json"), image_root=root),
        batch_size=BATCH,
        progress=False,
    )
    seconds = time.perf_counter() - start
    assert answers.height == questions.height
    return questions.height / seconds, timed.steady_rate()


def bench_eval(work: Path, n_questions: int) -> None:
    import ray

    root = work / "mmad" / "ALL_DATA"
    synthesize("mmad", root, per_class=1, size=64)
    questions = read_mmad_json(root / "mmad.json", root).head(n_questions)
    model = build_tiny_qwen25vl(work / "tiny")
    n = questions.height
    print(f"evaluation: {n} questions, batch {BATCH}, max_new_tokens {MAX_NEW_TOKENS}, CPU")
    print("  (steady: after the first batch arrived, i.e. without start-up and model loading)")

    e2e, steady = {}, {}
    threads = torch.get_num_threads()
    for label, nthreads in (
        (f"in process, {threads} threads", threads),
        ("in process, 1 thread", 1),
    ):
        torch.set_num_threads(nthreads)
        backend = TransformersBackend(model, batch_size=BATCH, max_new_tokens=MAX_NEW_TOKENS)
        e2e[label], steady[label] = timed_eval(backend, questions, root, work / f"local{nthreads}")
        print(f"  {label:<26} {e2e[label]:7.2f} q/s end to end, {steady[label]:7.2f} q/s steady")
    torch.set_num_threads(threads)

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    for workers in (1, 2):
        backend = RayBackend(
            model,
            address=None,
            num_workers=workers,
            batch_size=BATCH,
            max_new_tokens=MAX_NEW_TOKENS,
        )
        label = f"Ray, {workers} actor{'s' if workers > 1 else ''}"
        e2e[label], steady[label] = timed_eval(backend, questions, root, work / f"ray{workers}")
        print(f"  {label:<26} {e2e[label]:7.2f} q/s end to end, {steady[label]:7.2f} q/s steady")
    ray.shutdown()

    one = "in process, 1 thread"
    overhead = steady[one] / steady["Ray, 1 actor"]
    verdict = "meets" if overhead <= TARGET_OVERHEAD else "misses"
    print(
        f"  Ray overhead, 1 actor vs 1 thread in process: {overhead:.2f}x steady "
        f"({verdict} target <= {TARGET_OVERHEAD}x), {e2e[one] / e2e['Ray, 1 actor']:.2f}x "
        "end to end"
    )
    print(
        f"  scaling 1 -> 2 actors: {steady['Ray, 2 actors'] / steady['Ray, 1 actor']:.2f}x "
        f"steady, {e2e['Ray, 2 actors'] / e2e['Ray, 1 actor']:.2f}x end to end; "
        f"2 actors vs in process ({threads} threads): "
        f"{steady['Ray, 2 actors'] / steady[f'in process, {threads} threads']:.2f}x steady"
    )


def training_set(work: Path) -> Path:
    from iad_pipeline.annotate import annotate_samples
    from iad_pipeline.datasets.registry import get_spec
    from iad_pipeline.datasets.samples import build_samples
    from iad_pipeline.questions.builders import build_questions
    from iad_pipeline.questions.export import save_hf_dataset, to_hf_dataset

    data = synthesize("mpdd", work / "mpdd", per_class=1, categories=["metal_plate"])
    samples = build_samples(get_spec("mpdd").scan(data.root)).samples
    annotations = annotate_samples(samples, workers=1).annotations
    refs = dict(zip(samples["sample_id"], samples["image_path"], strict=True))
    questions = build_questions(samples, annotations, styles=["emit"], reference_images=refs)
    return save_hf_dataset(to_hf_dataset(questions), work / "emit")


def train_seconds(
    work: Path, data: Path, steps: int, ray_workers: int | None, threads: int | None = None
) -> float:
    out = work / f"run-{ray_workers or 0}-{threads or 0}-{steps}"
    grpo = ["--recipe", "demo", "--output", str(out), "--training-set", str(data)]
    grpo += ["--max-steps", str(steps), "--model-dir", str(work)]
    if ray_workers:
        command = [sys.executable, "-m", "training.ray_train", "run"]
        command += ["--workers", str(ray_workers), "--", *grpo]
    else:
        command = [sys.executable, "-m", "training.grpo", *grpo]
    env = {**os.environ, "RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "PYTHONWARNINGS": "ignore"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not re.search(rf'"steps": {steps}\b', proc.stdout):
        raise SystemExit(f"training failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def bench_training(work: Path, steps: int) -> None:
    data = training_set(work)
    build_tiny_qwen25vl(work / "tiny-qwen25vl")
    print(f"training: demo recipe, tiny model, CPU; step time from 2 vs {2 + steps} steps")
    per_step = {}
    runs = (
        ("1 process", None, None),
        ("1 process, 1 thread", None, 1),
        ("Ray Train, 2 workers", 2, None),  # Ray gives each worker 1 CPU: 1 thread
    )
    for label, workers, threads in runs:
        short = train_seconds(work, data, 2, workers, threads)
        long = train_seconds(work, data, 2 + steps, workers, threads)
        per_step[label] = (long - short) / steps
        prompts = 1 if workers is None else workers  # demo: 4 completions = 1 prompt per rank
        print(
            f"  {label:<22} {per_step[label]:6.2f} s/step ({prompts / per_step[label]:.2f} "
            f"prompts/s), {short:.0f} s for a 2-step run with start-up"
        )
    for base in ("1 process", "1 process, 1 thread"):
        ratio = per_step["Ray Train, 2 workers"] / per_step[base]
        print(
            f"  step time, 2 Ray Train workers vs {base}: {ratio:.2f}x for twice the prompts "
            f"per step ({2 / ratio:.2f}x the prompts per second)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=148)
    parser.add_argument("--steps", type=int, default=20, help="steps beyond the 2-step run")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores, CUDA: {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        if not args.skip_eval:
            bench_eval(Path(tmp), args.questions)
        if not args.skip_training:
            bench_training(Path(tmp), args.steps)


if __name__ == "__main__":
    main()
