"""training/grpo.py: every recipe's rewards train on the tiny model; checkpoints resume."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iad_pipeline.annotate import annotate_samples
from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.questions.builders import build_questions
from iad_pipeline.questions.export import save_hf_dataset, to_hf_dataset
from iad_pipeline.synthetic import synthesize
from training.checkpoints import DONE, checkpoints, latest_checkpoint
from training.config import load_recipe
from training.grpo import build_trainer, grpo_config, load_model, load_training_dataset

ROOT = Path(__file__).resolve().parents[2]
STYLE = {
    "anomalyr1": "anomalyr1",
    "adfm": "adfm",
    "emit": "emit",
    "lriad": "lr_iad",
    "demo": "emit",
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """One exported training set per question style, from a synthetic MPDD category."""
    base = tmp_path_factory.mktemp("exports")
    root = synthesize("mpdd", base / "mpdd", per_class=1, categories=["metal_plate"])
    spec = get_spec("mpdd")
    samples = build_samples(spec.scan(root.root)).samples
    annotations = annotate_samples(samples, workers=1).annotations
    refs = {sid: p for sid, p in zip(samples["sample_id"], samples["image_path"], strict=True)}
    questions = build_questions(
        samples, annotations, styles=list(set(STYLE.values())), reference_images=refs
    )
    out = {}
    for style in set(STYLE.values()):
        out[style] = save_hf_dataset(
            to_hf_dataset(questions.filter(questions["style"] == style)), base / style
        )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["anomalyr1", "adfm", "emit", "lriad"])
@pytest.mark.parametrize("peft", ["lora", "none"])
def test_every_recipe_reward_set_trains_two_steps_on_the_tiny_model(
    exports, tmp_path, name: str, peft: str
) -> None:
    paper = load_recipe(name)
    recipe = dataclasses.replace(
        paper,
        model="tiny",
        deepspeed=None,
        max_train_samples=8,
        peft=dataclasses.replace(
            paper.peft, method=peft, r=4, alpha=8, target_modules=("q_proj", "v_proj")
        ),
        image=dataclasses.replace(paper.image, min_pixels=3136, max_pixels=12544),
        difficulty=dataclasses.replace(paper.difficulty, resample_rounds=1),
        grpo={
            "num_generations": 4,
            "per_device_train_batch_size": 4,
            "max_steps": 2,
            "max_completion_length": 12,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "save_steps": 2,
            "temperature": paper.grpo.get("temperature", 1.0),
        },
        rewards=tuple(
            dataclasses.replace(r, params={**r.params, "num_generations": 4})
            if "num_generations" in r.params
            else r
            for r in paper.rewards
        ),
    )
    dataset = load_training_dataset(exports[STYLE[name]], recipe, seed=0)
    model, processor = load_model(recipe, tmp_path)
    trainer = build_trainer(
        recipe, model, processor, dataset, grpo_config(recipe, tmp_path / "out", None, 0)
    )
    trainer.train()
    assert trainer.state.global_step == 2
    logged = {k for h in trainer.state.log_history for k in h}
    for reward in recipe.rewards:
        assert f"rewards/{reward.name}/mean" in logged
    assert latest_checkpoint(tmp_path / "out").name == "checkpoint-2"


def _run(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "training.grpo", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_a_killed_run_resumes_from_the_last_complete_checkpoint(exports, tmp_path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    args = [
        "--recipe",
        "demo",
        "--output",
        str(out),
        "--training-set",
        str(exports["emit"]),
        "--max-steps",
        "40",
    ]
    proc = _run(args, env)
    deadline = time.time() + 240
    while not (out / "checkpoint-2" / DONE).is_file():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint-2 within 4 minutes"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # a save cut short leaves a folder without DONE: it must be ignored, not loaded
    (out / "checkpoint-3").mkdir(exist_ok=True)
    assert latest_checkpoint(out).name == "checkpoint-2"

    resumed = _run(
        [
            "--recipe",
            "demo",
            "--output",
            str(out),
            "--training-set",
            str(exports["emit"]),
            "--max-steps",
            "4",
            "--resume",
        ],
        env,
    )
    log, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, log
    assert '"steps": 4' in log
    done = [p.name for p in checkpoints(out)]
    assert done[-1] == "checkpoint-4"
    assert f"resuming from {out / 'checkpoint-2'}" in log
    # steps 1 and 2 were not redone: their log entries are the killed run's, byte for byte
    import json

    def history(step: int) -> list[dict]:
        state = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())
        return [h for h in state["log_history"] if h.get("step") in (1, 2)]

    assert history(4) == history(2)
