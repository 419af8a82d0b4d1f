"""training/grpo.py: every recipe's rewards train on the tiny model; checkpoints resume."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.training_sets import emit_training_set
from training.checkpoints import DONE, checkpoints, latest_checkpoint
from training.config import load_recipe
from training.dataset import load_training_dataset
from training.grpo import build_trainer, grpo_config
from training.model_setup import load_model

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
    styles = tuple(sorted(set(STYLE.values())))
    return emit_training_set(tmp_path_factory.mktemp("exports"), styles)


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


STAGED = """\
name: staged
model: tiny
training_set: emit
max_train_samples: 8
stages: [sft, grpo]
sft:
  args: {per_device_train_batch_size: 2, learning_rate: 1.0e-3, save_steps: 2, logging_steps: 1}
rewards:
  - {name: choice_accuracy, params: {invalid: -1.0}}
image: {min_pixels: 3136, max_pixels: 12544}
grpo:
  num_generations: 4
  per_device_train_batch_size: 4
  max_completion_length: 8
  learning_rate: 1.0e-3
  save_steps: 2
  logging_steps: 1
"""
SFT_ONLY = STAGED.split("rewards:")[0].replace("[sft, grpo]", "[sft]") + (
    "image: {min_pixels: 3136, max_pixels: 12544}\n"
)


# Runs training/grpo.py as `python -m training.grpo` does, and SIGKILLs the process the moment
# the DONE marker of checkpoint <step> of <stage> is written: argv is <stage> <step> <args...>.
# The kill lands at the same point on every run (polling for the marker, then killing, let the
# trainer race on to later checkpoints on a fast machine).
KILLED_AFTER_SAVE = """
import os, runpy, signal, sys
from training.checkpoints import DoneMarker

KILL_AT = (sys.argv[1], int(sys.argv[2]))
mark_done = DoneMarker.on_save


def on_save(self, args, state, control, **kwargs):
    control = mark_done(self, args, state, control, **kwargs)
    if (self.stage, state.global_step) == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
    return control


DoneMarker.on_save = on_save
sys.argv = ["training.grpo", *sys.argv[3:]]
runpy.run_module("training.grpo", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_a_killed_run_resumes_in_its_stage_from_the_last_complete_checkpoint(
    exports, tmp_path
) -> None:
    recipe = tmp_path / "staged.yaml"
    recipe.write_text(STAGED)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    common = ["--recipe", str(recipe), "--output", str(out), "--training-set", str(exports["emit"])]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_SAVE, "sft", "2", *common, "--max-steps", "40"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert [p.name for p in checkpoints(out / "sft", complete_only=False)] == ["checkpoint-2"]
    # a save cut short leaves a folder without DONE: it must be ignored, not loaded
    (out / "sft" / "checkpoint-3").mkdir(exist_ok=True)
    assert latest_checkpoint(out / "sft").name == "checkpoint-2"
    # without --resume the folder is refused: it holds the killed run's checkpoints
    refused = _run([*common, "--max-steps", "4"], env)
    log, _ = refused.communicate(timeout=120)
    assert refused.returncode == 2
    assert "pass --resume to continue it or --overwrite" in log
    assert "Traceback" not in log

    resumed = _run([*common, "--max-steps", "4", "--resume"], env)
    log, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, log
    assert f"stage sft (1/2): 8 prompts; resuming from {out / 'sft' / 'checkpoint-2'}" in log
    assert f"stage grpo (2/2) from {out / 'sft' / 'checkpoint-4'}" in log
    assert [p.name for p in checkpoints(out / "sft")] == ["checkpoint-2", "checkpoint-4"]
    assert [p.name for p in checkpoints(out / "grpo")][-1] == "checkpoint-4"
    summary = json.loads(log.strip().splitlines()[-1])["iad_training_summary"]
    assert summary["stage"] == "grpo" and summary["steps"] == 4
    assert summary["stages"]["sft"]["steps"] == 4
    assert (out / "base" / "checkpoint-0" / DONE).is_file()  # the baseline, for evaluation

    # steps 1 and 2 of sft were not redone: their log entries are the killed run's
    def history(step: int) -> list[dict]:
        path = out / "sft" / f"checkpoint-{step}" / "trainer_state.json"
        state = json.loads(path.read_text())
        return [h for h in state["log_history"] if h.get("step") in (1, 2)]

    assert history(4) == history(2)
    # a finished run resumed again trains nothing
    again = _run([*common, "--max-steps", "4", "--resume"], env)
    log, _ = again.communicate(timeout=300)
    assert again.returncode == 0, log
    assert log.count("already reached step 4") == 2


@pytest.mark.slow
def test_a_retraining_killed_mid_save_is_never_taken_as_complete(
    exports, tmp_path, monkeypatch
) -> None:
    """Issue 10, item 2: re-training over a finished run, killed while writing its
    checkpoint, leaves no complete-looking folder; --resume trains it again."""
    from transformers import Trainer

    from training.grpo import main

    recipe = tmp_path / "staged.yaml"
    recipe.write_text(SFT_ONLY)
    out = tmp_path / "run"
    common = ["--recipe", str(recipe), "--output", str(out), "--training-set", str(exports["emit"])]
    assert main([*common, "--max-steps", "2"]) == 0
    first = (out / "sft" / "checkpoint-2" / "model.safetensors").read_bytes()
    assert main([*common, "--max-steps", "2"]) == 2  # refused: the folder holds a run

    class Killed(BaseException):
        pass

    def die(self, output_dir):  # weights are written, the optimizer state is not
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_save_optimizer_and_scheduler", die)
        m.setattr(Trainer, "_save_rng_state", die)
        with pytest.raises(Killed):
            main([*common, "--max-steps", "2", "--overwrite", "--seed", "1"])
    folder = out / "sft" / "checkpoint-2"
    assert folder.is_dir() and not (folder / DONE).exists()
    assert latest_checkpoint(out / "sft") is None
    # --resume does not take the half-written folder: it trains the stage again, completely
    assert main([*common, "--max-steps", "2", "--resume", "--seed", "1"]) == 0
    assert (folder / DONE).is_file() and (folder / "optimizer.pt").is_file()
    assert (folder / "model.safetensors").read_bytes() != first
