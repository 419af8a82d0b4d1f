"""Training on a real local Ray cluster: 2 Ray Train workers (gloo), through Dagster Pipes.

``grpo_ray`` is grpo_run's body with the Ray launcher: the same training/grpo.py arguments,
handed to assets/ray_launch.py instead of the subprocess client.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.ray_launch import launch_training_on_ray
from iad_pipeline.resources import RaySection, TrainingLauncher
from tests.support.training_sets import emit_training_set
from training.checkpoints import DONE, checkpoints, latest_checkpoint

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def training_set(tmp_path_factory) -> Path:
    """A tiny exported EMIT training set from one synthetic MPDD category."""
    return emit_training_set(tmp_path_factory.mktemp("set"))["emit"]


# the demo recipe's GRPO stage alone (its SFT warm start is 120 steps): checkpoints in grpo/
RECIPE = Path(__file__).parent / "demo_grpo.yaml"


def grpo_ray_asset(output: Path, training_set: Path) -> dg.AssetsDefinition:
    @dg.asset(name="grpo_run")
    def grpo_run(context: dg.AssetExecutionContext, launcher: TrainingLauncher):
        script = ["-m", "training.grpo", "--recipe", str(RECIPE), "--output", str(output)]
        script += ["--resume", "--training-set", str(training_set)]
        if launcher.max_steps is not None:
            script += ["--max-steps", str(launcher.max_steps)]
        assert launcher.launcher == "ray"
        return launch_training_on_ray(context, launcher.ray, script, env={})

    return grpo_run


def materialize(ray_cluster, output: Path, training_set: Path, max_steps: int):
    launcher = TrainingLauncher(
        launcher="ray",
        max_steps=max_steps,
        ray=RaySection(address=ray_cluster.dashboard, num_workers=2),
    )
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [grpo_ray_asset(output, training_set)],
            resources={"launcher": launcher},
            raise_on_error=False,
            instance=instance,
        )


def metadata(result) -> dict:
    (event,) = result.asset_materializations_for_node("grpo_run")
    return {k: v.value for k, v in event.metadata.items()}


def history(checkpoint: Path, steps: set[int]) -> list[dict]:
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return [h for h in state["log_history"] if h.get("step") in steps]


@pytest.fixture(scope="module")
def first_run(ray_cluster, training_set, tmp_path_factory):
    output = tmp_path_factory.mktemp("ray-run") / "demo"
    return output, materialize(ray_cluster, output, training_set, max_steps=2)


def test_the_demo_recipe_trains_two_steps_on_two_ray_train_workers(first_run) -> None:
    output, result = first_run
    assert result.success
    meta = metadata(result)
    assert meta["steps"] == 2 and meta["ray_workers"] == 2
    assert meta["checkpoint"] == str(output / "grpo" / "checkpoint-2")
    checkpoint = latest_checkpoint(output / "grpo")
    assert (
        checkpoint == output / "grpo" / "checkpoint-2"
        and json.loads((checkpoint / DONE).read_text())["step"] == 2
    )
    # one RNG state per rank: both Ray Train workers trained in one process group
    assert sorted(p.name for p in checkpoint.glob("rng_state_*.pth")) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]


def test_a_killed_job_resumes_from_the_newest_complete_checkpoint(
    first_run, ray_cluster, training_set
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    from assets.ray_launch import training_job

    output, _ = first_run
    stage = output / "grpo"
    client = JobSubmissionClient(ray_cluster.dashboard)
    params = training_job(
        RaySection(address=ray_cluster.dashboard, num_workers=2),
        [
            *("--recipe", str(RECIPE), "--output", str(output)),
            *("--training-set", str(training_set), "--resume", "--max-steps", "40"),
        ],
    )
    job = client.submit_job(**params)
    deadline = time.time() + 300
    while not (stage / "checkpoint-4" / DONE).is_file():
        status = client.get_job_status(job)
        assert not status.is_terminal(), client.get_job_logs(job)[-3000:]
        if time.time() >= deadline:  # a wait timeout, not a timing assertion
            pytest.fail("no checkpoint-4 within 5 minutes")
        time.sleep(0.5)
    client.stop_job(job)
    while not client.get_job_status(job).is_terminal():
        time.sleep(0.5)
    assert client.get_job_status(job) == JobStatus.STOPPED
    # the job may have saved more checkpoints before the stop reached it
    stopped_at = latest_checkpoint(stage)
    step = int(stopped_at.name.split("-")[1])
    assert 4 <= step < 40
    (stage / f"checkpoint-{step + 1}").mkdir(exist_ok=True)  # a save cut short: no DONE
    assert latest_checkpoint(stage) == stopped_at

    result = materialize(ray_cluster, output, training_set, max_steps=step + 2)
    assert result.success
    assert metadata(result)["steps"] == step + 2
    assert [p.name for p in checkpoints(stage)][-1] == f"checkpoint-{step + 2}"
    # the steps done before were not trained again: their log entries are the stopped job's
    done = set(range(1, step + 1))
    assert history(stage / f"checkpoint-{step + 2}", done) == history(stopped_at, done)


def test_a_bad_address_fails_with_one_line_naming_it(training_set, tmp_path) -> None:
    bad = "http://127.0.0.1:9"
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [grpo_ray_asset(tmp_path / "demo", training_set)],
            resources={"launcher": TrainingLauncher(launcher="ray", ray=RaySection(address=bad))},
            raise_on_error=False,
            instance=instance,
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message.strip()
    assert bad in message and "\n" not in message


def test_iad_train_with_a_bad_ray_address_fails_in_one_line_naming_it(
    training_set, tmp_path
) -> None:
    bad = "http://127.0.0.1:9"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "iad_pipeline.cli", "train", "--recipe", "demo"),
            *("--launcher", "ray", "--ray-address", bad, "--output", str(tmp_path / "demo")),
            *("--training-set", str(training_set)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    (line,) = [line for line in proc.stderr.splitlines() if "ray address" in line]
    assert line.startswith(f"error: ray address '{bad}': no Ray job server answers there")
    assert "Traceback" not in proc.stderr
