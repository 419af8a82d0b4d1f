"""``iad train``: a recipe's stages in a supervised child process (``training/grpo.py``, or
``training/ray_train.py`` on Ray Train workers), one trainer per run folder.

Registered with the ``iad`` command through the ``iad_pipeline.cli`` entry-point group.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from iad_pipeline.cli.common import add_profile, add_verb, consoles, layout_of
from iad_pipeline.errors import IadError
from iad_pipeline.paths import Layout
from training.config import load_recipe


def cmd_train(args: argparse.Namespace) -> int:
    import signal

    from iad_pipeline.supervise import LOCK_ENV, LOCK_NAME, run_folder_lock, run_supervised

    layout = layout_of(args)
    _check_training_inputs(args, layout)
    # Training runs as its own process (training/grpo.py, as under accelerate or Dagster).
    name = Path(args.recipe).stem
    output = Path(args.output) if args.output else layout.run(name)
    command = [
        sys.executable,
        "-m",
        "training.grpo",
        "--recipe",
        args.recipe,
        "--output",
        str(output),
    ]
    if args.max_steps is not None:
        command += ["--max-steps", str(args.max_steps)]
    if args.resume:
        command.append("--resume")
    if args.overwrite:
        command.append("--overwrite")
    if args.verbose:
        command.append("--verbose")
    command += ["--training-set", args.training_set or str(_training_set_dir(args, layout))]
    if args.launcher == "ray":
        # the same script as a Ray job on N Ray Train workers (training/ray_train.py)
        ray = ["-m", "training.ray_train", "submit", "--address", args.ray_address]
        command = [sys.executable, *ray, "--workers", str(args.workers), "--", *command[3:]]
    consoles.err.print(f"training {args.recipe} into {output}", soft_wrap=True)
    # one trainer per run folder; the child inherits the lock and dies with this process
    with run_folder_lock(output) as fd:
        env = {
            **os.environ,
            "IAD_HOME": str(layout.home),
            "IAD_PROFILE": layout.profile,
            LOCK_ENV: f"{fd}:{output / LOCK_NAME}",
        }
        code, stopped_by = run_supervised(command, env=env, pass_fds=[fd])
    if stopped_by is not None:
        name = signal.Signals(stopped_by).name
        consoles.err.print(
            f"iad: training stopped by {name}; the trainer has exited. Continue from the "
            f"newest complete checkpoint with: iad train --recipe {args.recipe} "
            + (f"--output {output} " if args.output else "")
            + "--resume",
            markup=False,
            soft_wrap=True,
        )
        return 128 + stopped_by
    if code == 2:  # a user error (recipe, data, run folder): the script printed one line
        return 2
    if code != 0:
        msg = f"training {args.recipe} failed (exit {code}); see the log above"
        raise IadError(msg)
    consoles.out.print(f"checkpoints in {output}")
    return 0


def _training_set_dir(args: argparse.Namespace, layout: Layout) -> Path:
    return layout.training_set_hf(load_recipe(args.recipe).training_set)


def _check_training_inputs(args: argparse.Namespace, layout: Layout) -> None:
    """Refuse before starting a process: a bad recipe or a missing training set is one line."""
    path = Path(args.training_set) if args.training_set else _training_set_dir(args, layout)
    if not path.is_dir():
        name = load_recipe(args.recipe).training_set
        msg = (
            f"{path}: no training set for recipe {args.recipe!r} (profile {layout.profile}); "
            f"materialize training_set[{name}] first (make demo, or the UI), or pass "
            "--training-set DIR"
        )
        raise IadError(msg)


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``iad train``."""
    p = add_verb(
        verbs,
        "train",
        cmd_train,
        summary="train a recipe, stage by stage: SFT, GRPO (tiny model on CPU: demo)",
        description="Run training/grpo.py for a recipe: each stage (sft, grpo) in order, the "
        "stage that runs, a progress bar, the loss or reward table as training runs, "
        "checkpoints in DIR/<stage>/checkpoint-<step>/ with a DONE marker. A DIR holding "
        "another run's checkpoints is refused without --resume or --overwrite.",
    )
    p.add_argument(
        "--recipe",
        required=True,
        metavar="NAME|PATH",
        help="anomalyr1, adfm, emit, lriad, demo, or a YAML file",
    )
    p.add_argument("--max-steps", type=int, default=None, help="override the recipe's steps")
    p.add_argument("--output", metavar="DIR", help="default: the profile's runs/<recipe>")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in DIR, in the stage that was running, from its newest "
        "complete checkpoint",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the checkpoints already in DIR and start over",
    )
    p.add_argument(
        "--training-set",
        metavar="DIR",
        help="exported training set (default: the training_set asset's export)",
    )
    add_profile(p)
    p.add_argument(
        "--launcher",
        choices=("python", "ray"),
        default="python",
        help="python: this machine; ray: a Ray job on Ray Train workers",
    )
    p.add_argument(
        "--ray-address",
        default="auto",
        metavar="ADDR",
        help="--launcher ray: auto (the cluster `ray start` started here), http://HOST:8265, "
        "or local (a cluster for this run)",
    )
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="--launcher ray: Ray Train workers"
    )
