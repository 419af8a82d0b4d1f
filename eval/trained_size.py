"""Is a checkpoint asked at the image size it trained at?

A Qwen-VL processor resizes every image within its pixel bounds (:func:`smart_resize`). A run
records the bounds its training used (``RUN.json``'s ``trained_pixels``); a protocol sets
the bounds of its evaluation. Where they differ, a synthetic 128-pixel image trained at
140 x 140 could be asked at 448 x 448, and the scores then measure the size change as much as
the model. :func:`size_warning` says so, with how many of the set's query images it moves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from eval.protocols import Protocol
from iad_pipeline.annotate import smart_resize
from iad_pipeline.run_folders import is_checkpoint, trained_pixels


def _qwen(model: Path) -> bool:
    """Whether the model folder holds a Qwen-VL model (the processor these bounds are for)."""
    try:
        config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return str(config.get("model_type", "")).startswith("qwen2")


def size_warning(
    checkpoint: Path,
    model: Path,
    protocol: Protocol,
    image_paths: Iterable[str],
    image_root: Path | str | None = None,
) -> str | None:
    """A one-line warning when ``protocol`` shows the query images at another size than the
    checkpoint's run trained them at; ``None`` when the sizes agree or nothing says how it
    trained (no run folder record, not a Qwen-VL model, no bounds in the protocol).

    >>> from eval.protocols import protocol_named
    >>> size_warning(Path("/x/model"), Path("/x/model"), protocol_named("mmad"), []) is None
    True
    """
    checkpoint = Path(checkpoint)
    trained = trained_pixels(checkpoint) if is_checkpoint(checkpoint) else None
    asked = (protocol.min_pixels, protocol.max_pixels)
    if trained is None or None in asked or trained == asked or not _qwen(model):
        return None
    root = Path(image_root) if image_root is not None else Path()
    bounds = (trained, asked)
    moved = total = 0
    for path in sorted(set(image_paths)):
        try:
            with Image.open(root / path) as image:
                width, height = image.size
            sizes = {smart_resize(height, width, min_pixels=lo, max_pixels=hi) for lo, hi in bounds}
        except (OSError, ValueError):
            continue  # the evaluation itself reports an unreadable image
        total += 1
        moved += len(sizes) > 1
    if not moved:
        return None
    return (
        f"{moved} of {total} query images are shown at another size than in training: the run "
        f"trained within {trained[0]}-{trained[1]} pixels (its RUN.json), {protocol.name} asks "
        f"within {asked[0]}-{asked[1]}"
    )
