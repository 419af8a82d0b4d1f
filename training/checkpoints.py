"""Checkpoints that are complete or ignored: a ``DONE`` marker is written last.

TRL saves ``DIR/checkpoint-<step>/`` (``trainer_state.json`` plus the (adapter) weights). A
process killed mid-save leaves a folder without ``DONE``; resuming picks the newest folder
that has one, so a crashed or retried run continues from the last complete checkpoint
instead of starting over or loading half a save.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from transformers import TrainerCallback

from iad_pipeline.fsutil import write_json

DONE = "DONE"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


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
    """The newest complete checkpoint, or ``None``."""
    done = checkpoints(output_dir)
    return done[-1] if done else None


def read_done(checkpoint: Path) -> dict:
    """The contents of a checkpoint's ``DONE`` marker."""
    return json.loads((checkpoint / DONE).read_text(encoding="utf-8"))


class DoneMarker(TrainerCallback):
    """Writes ``DONE`` (step, mean reward) into each checkpoint once the save has finished."""

    def __init__(self, recipe: str) -> None:
        self.recipe = recipe

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                rewards = [h["reward"] for h in state.log_history if "reward" in h]
                write_json(
                    folder / DONE,
                    {
                        "step": state.global_step,
                        "recipe": self.recipe,
                        "mean_reward": rewards[-1] if rewards else None,
                    },
                )
        return control


def checkpoint_key(checkpoint: Path) -> str:
    """The partition key of a checkpoint: ``<recipe>-<step>`` (its run folder and step).

    >>> checkpoint_key(Path("/x/runs/emit/checkpoint-400"))
    'emit-400'
    """
    match = CHECKPOINT.match(checkpoint.name)
    step = match.group(1) if match else checkpoint.name
    return f"{checkpoint.parent.name}-{step}"


def fingerprint(checkpoint: Path) -> str:
    """A content fingerprint: the DONE marker, trainer_state.json and the weight files' sizes.

    Re-training a checkpoint with the same name changes it, so its evaluation runs again.
    """
    import hashlib

    digest = hashlib.sha256()
    for name in (DONE, "trainer_state.json"):
        path = checkpoint / name
        if path.is_file():
            digest.update(path.read_bytes())
    for path in sorted(checkpoint.glob("*.safetensors")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def complete_checkpoints(runs_dir: Path) -> dict[str, Path]:
    """``{partition key: folder}`` of every complete checkpoint under ``runs/<recipe>/``.

    Only DONE markers are looked at (cheap enough for a sensor's 60 s budget).
    """
    found: dict[str, Path] = {}
    if not Path(runs_dir).is_dir():
        return found
    for run in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        for checkpoint in checkpoints(run):
            found[checkpoint_key(checkpoint)] = checkpoint
    return found
