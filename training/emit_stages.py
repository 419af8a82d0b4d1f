"""The module in a recipe's stages: the few calls a stage makes, in one place.

EMIT trains in two stages (paper, "Training Strategy"): stage 1 freezes the MLLM and aligns
the soft prompt and the projector by SFT on anomaly discrimination and defect localization
questions; stage 2 trains the whole model (here: its LoRA adapter) and the module together
with difficulty-aware GRPO. A stage that runs with the module calls:

1. :func:`prepare_model` on the model it starts from (attach the module, load its weights
   from the previous stage's checkpoint or from the checkpoint being resumed, and for the
   ``sft`` stage freeze everything else);
2. :func:`prepare_trainer` once the trainer exists (PEFT froze the module when it wrapped the
   model; the callback saves the module into every checkpoint).

:func:`stage1_question` tells which training rows stage 1 keeps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from iad_pipeline.models.emit.checkpoint import (
    EMIT_WEIGHTS_NAME,
    load_emit_module,
    save_emit_module,
)
from iad_pipeline.models.emit.model import (
    EmitError,
    attach_emit_module,
    find_emit_module,
    freeze_for_alignment,
    train_emit_module,
)
from iad_pipeline.models.emit.prompts import hint_task
from iad_pipeline.models.emit.settings import EmitModuleSettings

log = logging.getLogger(__name__)
STAGES = ("sft", "grpo")


class EmitModuleCallback(TrainerCallback):
    """Writes the module's weights into every ``checkpoint-<step>/`` the trainer saves."""

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_emit_module(model, folder)
        return control


def prepare_model(
    model: Any,
    processor: Any,
    settings: EmitModuleSettings,
    stage: str,
    *,
    start: str | Path | None = None,
    resume: str | Path | None = None,
) -> Any:
    """The stage's model with the module: attached, its weights loaded, stage 1's freezing.

    Weights come from ``resume`` (the stage's own checkpoint being resumed) or else from
    ``start`` (the previous stage's final checkpoint) when the folder holds
    ``emit_module.safetensors``; otherwise the module starts fresh (soft prompt from the cue).
    Inactive settings return the model unchanged.
    """
    if stage not in STAGES:
        raise ValueError(f"emit module: stage {stage!r}; expected one of {STAGES}")
    if not settings.active:
        return model
    tokenizer = getattr(processor, "tokenizer", processor)
    attach_emit_module(model, settings, tokenizer)
    for folder in (resume, start):
        if folder is not None and (Path(folder) / EMIT_WEIGHTS_NAME).is_file():
            load_emit_module(model, folder)
            log.info("emit module: weights from %s", folder)
            break
    if stage == "sft":
        trainable = freeze_for_alignment(model)
        log.info("emit module: stage 1 trains %d parameters (soft prompt, projector)", trainable)
    return model


def prepare_trainer(trainer: Any, settings: EmitModuleSettings) -> None:
    """After the trainer is built, before ``train()``: module trainable, saved with each
    checkpoint by a callback that runs before the others (so before a DONE marker's). The
    optimizer is created in ``train()``, so it sees the module."""
    if not settings.active:
        return
    if getattr(trainer.args, "use_vllm", False):
        msg = (
            "emit module: use_vllm generates outside the model's forward, so the hints would be "
            "missing from the completions; set use_vllm: false with emit_module"
        )
        raise EmitError(msg)
    train_emit_module(trainer.model)
    # first in line: the module's file is in the checkpoint before a DONE marker says complete
    trainer.callback_handler.callbacks.insert(0, EmitModuleCallback())
    suppress_placeholder(trainer)


def suppress_placeholder(trainer: Any) -> None:
    """Never sample the placeholder token in GRPO's generation: a completion holding it would
    look like a hint slot in the log-probability pass (TRL suppresses the image token the same
    way)."""
    config = getattr(trainer, "generation_config", None)
    if config is None:  # an SFT trainer: nothing is generated
        return
    module = find_emit_module(trainer.model)
    token = module.placeholder_id
    config.suppress_tokens = sorted({*(config.suppress_tokens or []), token})
    kwargs = getattr(trainer, "generation_kwargs", None)
    if isinstance(kwargs, dict):
        kwargs["suppress_tokens"] = sorted({*(kwargs.get("suppress_tokens") or []), token})


def stage1_question(task: str | None) -> bool:
    """Whether a training row belongs to stage 1 (EMIT: anomaly discrimination and defect
    localization questions)."""
    return hint_task(task)
