"""LoRA checkpoints as evaluable models: the adapter merged into its base, checked first.

A LoRA (or QLoRA) training run saves only the adapter (``adapter_config.json`` and
``adapter_model.safetensors``) in each ``checkpoint-<step>/``. Evaluation needs a whole model:
:func:`merged_model_dir` loads the base model named in the adapter's config, loads the
adapter onto it, checks that every adapter tensor found its module with the same shape, merges
and saves the result once, in full precision, beside the checkpoint. QLoRA adapters are merged
into the unquantized base, as the QLoRA paper deploys them.

The merged folder's name carries a digest of the adapter files, so an adapter re-trained
under the same ``checkpoint-<step>`` name is merged again instead of reusing the old weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from iad_pipeline.errors import IadError
from iad_pipeline.fsutil import temp_sibling

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class AdapterMismatchError(IadError):
    """A checkpoint's adapter that cannot be applied to the base model it names."""


def is_adapter_checkpoint(checkpoint: Path) -> bool:
    """True when ``checkpoint`` holds a PEFT adapter rather than a whole model."""
    return (Path(checkpoint) / ADAPTER_CONFIG).is_file()


def adapter_weights(checkpoint: Path) -> Path:
    """The adapter's weight file; an error naming the folder when there is none."""
    for name in ADAPTER_WEIGHTS:
        if (checkpoint / name).is_file():
            return checkpoint / name
    msg = (
        f"{checkpoint}: {ADAPTER_CONFIG} without adapter weights "
        f"({' or '.join(ADAPTER_WEIGHTS)}); the checkpoint is incomplete, re-save it"
    )
    raise AdapterMismatchError(msg)


def adapter_digest(checkpoint: Path) -> str:
    """12 hex digits of sha256 over the adapter's config and weights.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / ADAPTER_CONFIG).write_text("{}"); _ = (d / ADAPTER_WEIGHTS[0]).write_bytes(b"w")
    >>> adapter_digest(d)
    '85bde73694fa'
    """
    digest = hashlib.sha256()
    for path in (checkpoint / ADAPTER_CONFIG, adapter_weights(checkpoint)):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def base_model_of(checkpoint: Path) -> str:
    """The base model the adapter was trained on (``base_model_name_or_path``)."""
    path = checkpoint / ADAPTER_CONFIG
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as exc:
        msg = f"{path}: not a readable adapter config ({exc})"
        raise AdapterMismatchError(msg) from exc
    if not base:
        msg = f"{path}: no base_model_name_or_path; cannot tell which model the adapter is for"
        raise AdapterMismatchError(msg)
    return str(base)


def _check_every_tensor_applied(peft_model, checkpoint: Path, base: str) -> None:
    """Every adapter tensor in the file must have landed on a module of the base model."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    weights = adapter_weights(checkpoint)
    if weights.suffix != ".safetensors":
        return  # legacy .bin adapters: PEFT's own shape checks are all we have
    saved = load_file(str(weights))
    loaded = get_peft_model_state_dict(peft_model)
    missing = sorted(k for k in saved if k not in loaded)
    if missing:
        msg = (
            f"{checkpoint}: {len(missing)} adapter tensor(s) match no module of base model "
            f"{base} (first: {missing[0]}); the adapter was trained on another model"
        )
        raise AdapterMismatchError(msg)


def merge_adapter(checkpoint: Path, out_dir: Path) -> Path:
    """Load the base, apply the checkpoint's adapter, merge and save to ``out_dir``."""
    from peft import PeftModel

    from iad_pipeline.models.processors import load_model_and_processor

    base = base_model_of(checkpoint)
    try:
        model, processor = load_model_and_processor(base)
    except (OSError, ValueError) as exc:
        msg = f"{checkpoint}: cannot load its base model {base} ({exc})"
        raise AdapterMismatchError(msg) from exc
    try:
        peft_model = PeftModel.from_pretrained(model, str(checkpoint))
    except (RuntimeError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0]
        msg = f"{checkpoint}: the adapter does not fit base model {base} ({reason})"
        raise AdapterMismatchError(msg) from exc
    _check_every_tensor_applied(peft_model, checkpoint, base)
    merged = peft_model.merge_and_unload()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out_dir, ".merging")
    merged.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    tmp.rename(out_dir)
    log.info("merged %s into %s", checkpoint, out_dir)
    return out_dir


def merged_model_dir(checkpoint: Path, digest: str | None = None) -> Path:
    """A loadable model folder for ``checkpoint``: itself, or its adapter merged (cached).

    The cache is ``<run>/merged/<checkpoint-name>-<digest>/``; ``digest`` is the checkpoint's
    content fingerprint when the caller has it, else :func:`adapter_digest`.
    """
    checkpoint = Path(checkpoint)
    if not is_adapter_checkpoint(checkpoint):
        return checkpoint
    digest = digest or adapter_digest(checkpoint)
    out_dir = checkpoint.parent / "merged" / f"{checkpoint.name}-{digest}"
    if (out_dir / "config.json").is_file():
        return out_dir
    return merge_adapter(checkpoint, out_dir)


def model_path(checkpoint: Path, checkpoint_sha: str = "") -> Path:
    """A loadable model folder for a checkpoint; LoRA adapters are merged once, beside it.

    The merged folder's name carries the checkpoint's content fingerprint (``checkpoint_sha``,
    else a digest of the adapter files), so an adapter re-trained under the same name is
    merged again instead of reusing the old merge.
    """
    return merged_model_dir(checkpoint, checkpoint_sha[:16] or None)


def model_revision(path: Path) -> str | None:
    """A short content hash of a model folder: its config and its weight files' names and
    sizes (hashing gigabytes of weights per evaluation would cost more than the answers).

    A hub snapshot folder (``.../snapshots/<commit>``) is named by its commit instead.
    """
    if path.parent.name == "snapshots" and len(path.name) == 40:
        return path.name
    config = path / "config.json"
    if not config.is_file():
        return None
    digest = hashlib.sha256(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:12]
