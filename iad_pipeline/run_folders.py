"""What a training run folder says about its checkpoints: their names and how to ask them.

A run folder ``DIR`` holds ``DIR/<stage>/checkpoint-<step>/`` and a ``RUN.json`` written by
the training (``training.checkpoints.claim_run_dir``): the recipe, its settings' fingerprint,
the evaluation protocol its checkpoints are asked with (the recipe's prompt form, option
shuffle and pixel bounds) and the pixel bounds a Qwen-VL processor resized its training
images within. This module only reads; it is core, so the checkpoint sensor, the
evaluation assets and ``iad eval`` name a checkpoint and pick its protocol alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RUN_MANIFEST = "RUN.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
BASE_STAGE = "base"  # DIR/base/checkpoint-0: the untrained model, the recipe's baseline
RUN_STAGES = (BASE_STAGE, "sft", "grpo")  # stage folders a run may hold, in order


def is_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` is named ``checkpoint-<step>``.

    >>> is_checkpoint(Path("/x/runs/emit/grpo/checkpoint-400")), is_checkpoint(Path("/x/model"))
    (True, False)
    """
    return CHECKPOINT.match(Path(folder).name) is not None


def checkpoint_key(checkpoint: Path) -> str:
    """The partition key of a checkpoint: ``<recipe>-<stage>-<step>`` (run folder, stage,
    step); ``<recipe>-<step>`` for the one-stage layout.

    >>> checkpoint_key(Path("/x/runs/emit/grpo/checkpoint-400"))
    'emit-grpo-400'
    >>> checkpoint_key(Path("/x/runs/emit/checkpoint-400"))
    'emit-400'
    """
    checkpoint = Path(checkpoint)
    match = CHECKPOINT.match(checkpoint.name)
    step = match.group(1) if match else checkpoint.name
    if checkpoint.parent.name in RUN_STAGES:
        return f"{checkpoint.parent.parent.name}-{checkpoint.parent.name}-{step}"
    return f"{checkpoint.parent.name}-{step}"


def run_folder(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to.

    >>> run_folder(Path("/x/runs/emit/sft/checkpoint-40")), run_folder(Path("/x/a/checkpoint-4"))
    (PosixPath('/x/runs/emit'), PosixPath('/x/a'))
    """
    parent = Path(checkpoint).parent
    return parent.parent if parent.name in RUN_STAGES else parent


def checkpoint_recipe(checkpoint: Path) -> str:
    """The recipe (run folder name) a checkpoint belongs to.

    >>> checkpoint_recipe(Path("/x/runs/emit/sft/checkpoint-40"))
    'emit'
    """
    return run_folder(checkpoint).name


def read_manifest(run_dir: Path) -> dict | None:
    """The run folder's ``RUN.json`` (the recipe that owns it), or ``None``; ``{}`` for one
    that cannot be read."""
    path = Path(run_dir) / RUN_MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def run_evaluation(checkpoint: Path) -> tuple[str, dict] | None:
    """``(protocol name, changes)`` the checkpoint's run folder records for its evaluation, or
    ``None`` (no ``RUN.json``, or one written before runs recorded it).

    >>> import tempfile
    >>> from iad_pipeline.fsutil import write_json
    >>> run = Path(tempfile.mkdtemp())
    >>> _ = write_json(run / RUN_MANIFEST, {"recipe": "demo", "evaluation": {
    ...     "protocol": "emit_think", "changes": {"form": "question"}}})
    >>> run_evaluation(run / "grpo" / "checkpoint-8"), run_evaluation(Path(tempfile.mkdtemp()))
    (('emit_think', {'form': 'question'}), None)
    """
    entry = (read_manifest(run_folder(checkpoint)) or {}).get("evaluation")
    if not isinstance(entry, dict) or not isinstance(entry.get("protocol"), str):
        return None
    changes = entry.get("changes")
    return entry["protocol"], dict(changes) if isinstance(changes, dict) else {}


def trained_pixels(checkpoint: Path) -> tuple[int, int] | None:
    """``(min_pixels, max_pixels)`` the checkpoint's run trained a Qwen-VL processor's images
    within (the recipe's ``image`` block), or ``None`` where the run folder does not say."""
    value = (read_manifest(run_folder(checkpoint)) or {}).get("trained_pixels")
    ok = isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)
    return (value[0], value[1]) if ok else None
