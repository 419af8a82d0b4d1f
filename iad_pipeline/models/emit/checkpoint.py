"""The module's weights beside a checkpoint's adapter, and loading them for evaluation.

Every ``checkpoint-<step>/`` folder gets ``emit_module.safetensors``: the soft prompt and
projector tensors (names ``soft_prompt.weight``, ``projector.norm.*``, ``projector.conv.*``,
BatchNorm's running statistics included) and, in the file's metadata, the settings and the
placeholder token, so a reader needs nothing else. Training's ``EmitModuleCallback``
(``training.emit_stages``) writes it on every save; :func:`load_emit_model` loads a checkpoint
for evaluation, with the module when the file is there and as the plain model, with a
warning, when it is not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from iad_pipeline.models.emit.model import EmitError, attach_emit_module, find_emit_module
from iad_pipeline.models.emit.settings import EmitModuleSettings

log = logging.getLogger(__name__)

EMIT_WEIGHTS_NAME = "emit_module.safetensors"
FORMAT = "iad-emit-module/1"
# transformers reports the module's tensors in model.safetensors as "UNEXPECTED" keys of the
# plain model: they are, until attach_emit_module and load_emit_module put them in place
_MODULE_KEY = ".emit."


class _ModuleKeysReport(logging.Filter):
    """Drops transformers' load report when every key it lists is the comparison module's
    (loaded right after from emit_module.safetensors); any other key keeps the report."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "LOAD REPORT" not in text:
            return True
        keys = [
            line.split("|")[0].strip()
            for line in text.splitlines()
            if line.count("|") >= 2 and not line.startswith(("Key", "-"))
        ]
        return not keys or not all(_MODULE_KEY in k for k in keys)


@contextlib.contextmanager
def quiet_module_keys(active: bool = True) -> Iterator[None]:
    """While loading a checkpoint whose module is put in place afterwards: no load report
    that lists only the module's tensors (:class:`_ModuleKeysReport`)."""
    report = logging.getLogger("transformers.modeling_utils")
    quiet = _ModuleKeysReport()
    if active:
        report.addFilter(quiet)
    try:
        yield
    finally:
        report.removeFilter(quiet)


def save_emit_module(model: torch.nn.Module, folder: str | Path) -> Path:
    """Write the model's module to ``folder/emit_module.safetensors`` (temp name, renamed)."""
    module = find_emit_module(model)
    if module is None:
        raise EmitError("emit module: the model has none to save")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {
        "format": FORMAT,
        "settings": json.dumps(module.settings.to_dict()),
        "hidden": str(module.hidden),
    }
    path = folder / EMIT_WEIGHTS_NAME
    tmp = folder / f".{EMIT_WEIGHTS_NAME}.{os.getpid()}.tmp"
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_emit_file(path: str | Path) -> tuple[EmitModuleSettings, dict[str, torch.Tensor]]:
    """Settings and tensors of an ``emit_module.safetensors`` file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (OSError, ValueError) as exc:
        raise EmitError(f"{path}: unreadable emit module weights ({exc})") from exc
    if meta.get("format") != FORMAT:
        msg = f"{path}: format {meta.get('format')!r}; expected {FORMAT!r}"
        raise EmitError(msg)
    data = json.loads(meta["settings"])
    if data.get("layers") is not None:
        data["layers"] = tuple(data["layers"])
    return EmitModuleSettings.from_mapping(data, source=str(path)), tensors


def load_emit_module(model: torch.nn.Module, folder: str | Path) -> None:
    """Load ``folder/emit_module.safetensors`` into the model's module (strict)."""
    module = find_emit_module(model)
    if module is None:
        raise EmitError("emit module: the model has none to load into")
    path = Path(folder) / EMIT_WEIGHTS_NAME
    settings, tensors = read_emit_file(path)
    if settings != module.settings:
        msg = f"{path}: saved with settings {settings}, the model's module has {module.settings}"
        raise EmitError(msg)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise EmitError(f"{path}: weights do not fit the model's module ({exc})") from exc


@dataclasses.dataclass(frozen=True)
class EmitLoad:
    """What :func:`load_emit_model` found: whether the module is on, and a warning if not."""

    emit: bool
    warning: str | None = None


def _processor(path: str | Path, model_type: str) -> Any:
    if model_type == "internvl":
        from iad_pipeline.models.processors import load_internvl_processor

        return load_internvl_processor(path)
    from iad_pipeline.models.processors import load_processor

    return load_processor(path)


def _run_used_module(path: Path) -> bool:
    """Whether another checkpoint of the same run folder holds the module's weights."""
    return any(p.parent != path for p in path.parent.glob(f"checkpoint-*/{EMIT_WEIGHTS_NAME}"))


def load_emit_model(
    path: str | Path, *, expect_emit: bool | None = None, **from_pretrained: Any
) -> tuple[Any, EmitLoad]:
    """A checkpoint's model for evaluation, with its comparison module when it has one.

    ``from_pretrained`` goes to ``AutoModelForImageTextToText.from_pretrained`` (dtype,
    device_map, ...). Without ``emit_module.safetensors`` the model is the plain one; when the
    module was expected (``expect_emit=True``, or by default when another checkpoint of the
    same run folder has it) :attr:`EmitLoad.warning` says so (also logged): record it in the
    run's metadata.
    """
    from transformers import AutoModelForImageTextToText

    import iad_pipeline.models.processors  # noqa: F401  (registers the image-only processors)

    path = Path(path)
    weights = path / EMIT_WEIGHTS_NAME
    with quiet_module_keys(weights.is_file()):
        model = AutoModelForImageTextToText.from_pretrained(path, **from_pretrained)
    if not weights.is_file():
        expected = _run_used_module(path) if expect_emit is None else expect_emit
        if not expected:
            return model, EmitLoad(emit=False)
        warning = (
            f"{path}: no {EMIT_WEIGHTS_NAME}; evaluated as the plain model, without EMIT's hints"
        )
        log.warning(warning)
        return model, EmitLoad(emit=False, warning=warning)
    settings, _ = read_emit_file(weights)
    tokenizer = getattr(_processor(path, model.config.model_type), "tokenizer", None)
    attach_emit_module(model, settings, tokenizer)
    load_emit_module(model, path)
    model.eval()
    return model, EmitLoad(emit=True)
