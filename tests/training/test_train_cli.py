"""``iad train`` with a bad recipe: one line naming the file and field, exit 2; -v traces."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BAD = "name: x\nmodel: tiny\ntraining_set: emit\nrewards: [{name: format}]\n"


def _train(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IAD_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [sys.executable, "-m", "iad_pipeline.cli", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("grpo: {learning_rate: fast}\n", "grpo.learning_rate"),
        ("grpo: {output_dir: /tmp/elsewhere}\n", "grpo.output_dir"),
        ("max_train_samples: -5\n", "max_train_samples"),
    ],
)
def test_an_invalid_recipe_is_one_line_without_a_traceback(tmp_path, body, field) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(BAD + body)
    done = _train(tmp_path, "train", "--recipe", str(recipe), "--output", str(tmp_path / "r"))
    assert done.returncode != 0  # checked by iad train before the script starts
    errors = [line for line in done.stderr.splitlines() if line.startswith("iad: error:")]
    assert len(errors) == 1 and str(recipe) in errors[0] and field in errors[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "r").exists()  # nothing was written


def test_verbose_shows_the_traceback(tmp_path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(BAD + "grpo: {num_generations: -1}\n")
    done = _train(tmp_path, "-v", "train", "--recipe", str(recipe), "--output", str(tmp_path / "r"))
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "RecipeError" in done.stderr
