"""Checkpoints that are complete or ignored: a ``DONE`` marker is removed first, written last.

A run folder ``DIR`` holds one folder per stage, ``DIR/<stage>/checkpoint-<step>/`` (TRL's
``trainer_state.json`` plus the (adapter) weights), a ``RUN.json`` naming the recipe that
owns the folder, and for the tiny offline model ``DIR/base/checkpoint-0/`` (the untrained
model, evaluated as the recipe's baseline). Before a checkpoint folder is (re)written its
``DONE`` marker is deleted; the marker is written once the save has finished. A process
killed mid-save therefore leaves a folder without ``DONE`` -- also when it was rewriting an
older complete checkpoint of the same name -- and resuming picks the newest folder that has
one, so a crashed or retried run continues from the last complete checkpoint instead of
loading half a save.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import TrainerCallback

from iad_pipeline.fsutil import write_json
from iad_pipeline.run_folders import (
    BASE_STAGE,
    CHECKPOINT,
    RUN_MANIFEST,
    RUN_STAGES,
    checkpoint_key,
    read_manifest,
)

DONE = "DONE"


def checkpoints(output_dir: Path, *, complete_only: bool = True) -> list[Path]:
    """Checkpoint folders of ``output_dir``, oldest first.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for step, done in ((2, True), (4, False), (10, True)):
    ...     (d / f"checkpoint-{step}").mkdir()
    ...     _ = (d / f"checkpoint-{step}" / DONE).write_text("{}") if done else None
    >>> [p.name for p in checkpoints(d)]
    ['checkpoint-2', 'checkpoint-10']
    """
    if not Path(output_dir).is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in Path(output_dir).iterdir()
        if p.is_dir() and (m := CHECKPOINT.match(p.name))
    ]
    found.sort()
    return [p for _, p in found if not complete_only or (p / DONE).is_file()]


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint of one folder (a stage folder), or ``None``."""
    done = checkpoints(output_dir)
    return done[-1] if done else None


def step_of(checkpoint: Path) -> int:
    """The step of a ``checkpoint-<step>`` folder."""
    match = CHECKPOINT.match(Path(checkpoint).name)
    if not match:
        msg = f"{checkpoint}: not a checkpoint-<step> folder"
        raise ValueError(msg)
    return int(match.group(1))


def stage_dir(run_dir: Path, stage: str) -> Path:
    """Where ``stage`` of the run in ``run_dir`` saves its checkpoints."""
    return Path(run_dir) / stage


def run_checkpoints(run_dir: Path, *, complete_only: bool = True) -> list[tuple[str, Path]]:
    """``(stage, folder)`` of every checkpoint of a run folder, in stage then step order.

    A folder of the one-stage layout (``DIR/checkpoint-<step>``, before stages) is listed with
    stage ``""``.
    """
    found = [("", p) for p in checkpoints(run_dir, complete_only=complete_only)]
    for stage in RUN_STAGES:
        found += [
            (stage, p) for p in checkpoints(stage_dir(run_dir, stage), complete_only=complete_only)
        ]
    return found


def claim_run_dir(
    run_dir: Path,
    recipe: str,
    fingerprint_: str,
    *,
    resume: bool,
    overwrite: bool,
    evaluation: tuple[str, dict] | None = None,
    trained_pixels: tuple[int, int] | None = None,
) -> None:
    """Make ``run_dir`` this run's folder, or refuse with an error naming the fix.

    A folder holding checkpoints (complete or not) is only reused with ``resume`` (and then
    only when its ``RUN.json`` names the same recipe with the same settings) or emptied with
    ``overwrite``; nothing else ever trains over another run's checkpoints. ``evaluation``
    (``(protocol name, changes)``) and ``trained_pixels`` (the processor's pixel bounds in
    training) are recorded for the run's checkpoints (:mod:`iad_pipeline.run_folders`).
    """
    from iad_pipeline.errors import IadError

    run_dir = Path(run_dir)
    held = run_checkpoints(run_dir, complete_only=False)
    manifest = read_manifest(run_dir)
    mine = {"recipe": recipe, "fingerprint": fingerprint_}
    if overwrite:
        for stage in ("", *RUN_STAGES):
            for _, folder in [(s, p) for s, p in held if s == stage]:
                shutil.rmtree(folder, ignore_errors=False)
        (run_dir / RUN_MANIFEST).unlink(missing_ok=True)
    elif held or manifest is not None:
        other = manifest or {}
        if not resume:
            msg = (
                f"{run_dir} holds checkpoints of an earlier run (recipe "
                f"{other.get('recipe', 'unknown')}); pass --resume to continue it or "
                "--overwrite to delete them and start over"
            )
            raise IadError(msg)
        if other.get("recipe") != recipe or other.get("fingerprint") != fingerprint_:
            what = (
                "no RUN.json"
                if manifest is None
                else f"recipe {other.get('recipe')!r} with other settings"
                if other.get("recipe") == recipe
                else f"recipe {other.get('recipe')!r}"
            )
            msg = (
                f"{run_dir} holds checkpoints of another run ({what}); --resume continues only "
                "the same recipe with the same settings: pass --overwrite to start over or "
                "choose another --output"
            )
            raise IadError(msg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if evaluation is not None:
        mine["evaluation"] = {"protocol": evaluation[0], "changes": evaluation[1]}
    if trained_pixels is not None:
        mine["trained_pixels"] = list(trained_pixels)
    write_json(run_dir / RUN_MANIFEST, mine)


def write_done(folder: Path, **fields) -> None:
    """Mark ``folder`` complete (atomically: temp name, then rename)."""
    write_json(Path(folder) / DONE, fields)


class DoneMarker(TrainerCallback):
    """Deletes a checkpoint's ``DONE`` before the trainer (re)writes the folder and writes it
    (step, stage, mean reward or loss) once the save has finished.

    TRL sets ``control.should_save`` in ``on_step_end`` and saves right after the callbacks'
    ``on_step_end``: the stale marker of an older checkpoint of the same name is gone before
    the first byte of the new save.
    """

    def __init__(self, recipe: str, stage: str = "grpo") -> None:
        self.recipe = recipe
        self.stage = stage

    def _folder(self, args, state) -> Path:
        return Path(args.output_dir) / f"checkpoint-{state.global_step}"

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save and state.is_world_process_zero:
            (self._folder(args, state) / DONE).unlink(missing_ok=True)
        return control

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = self._folder(args, state)
            if folder.is_dir():
                rewards = [h["reward"] for h in state.log_history if "reward" in h]
                losses = [h["loss"] for h in state.log_history if "loss" in h]
                write_done(
                    folder,
                    step=state.global_step,
                    recipe=self.recipe,
                    stage=self.stage,
                    mean_reward=rewards[-1] if rewards else None,
                    loss=losses[-1] if losses else None,
                )
        return control


def base_checkpoint_key(recipe: str) -> str:
    """The partition key of a recipe's untrained base model (``DIR/base/checkpoint-0``)."""
    return f"{recipe}-{BASE_STAGE}-0"


def complete_checkpoints(runs_dir: Path) -> dict[str, Path]:
    """``{partition key: folder}`` of every complete checkpoint under ``runs/<recipe>/``.

    Only DONE markers are looked at (cheap enough for a sensor's 60 s budget).
    """
    found: dict[str, Path] = {}
    if not Path(runs_dir).is_dir():
        return found
    for run in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        for _, checkpoint in run_checkpoints(run):
            found[checkpoint_key(checkpoint)] = checkpoint
    return found
