"""EMIT's comparison module: soft prompt and heat-map-guided contrastive embeddings.

EMIT (shared/papers/emit.txt, "Contrastive Embeddings", "Soft Prompt", "Training Strategy")
compares the query image with a normal reference patch by patch inside the model's own vision
tower, projects the resulting heat map into the language model's embedding space and feeds it,
after a learnable soft prompt, with anomaly discrimination and defect localization questions.

- :mod:`.settings`: the recipe's ``emit_module`` block (switches for EMIT's ablations);
- :mod:`.heatmap`: the windowed minimal cosine distance, vectorised;
- :mod:`.projector`: BatchNorm + convolution + flatten, and the soft prompt;
- :mod:`.prompts`: where the placeholder goes in a prompt;
- :mod:`.model`: the one ``forward`` that injects the hints for every path (training,
  ``generate``, log-probabilities, evaluation), stage 1's freezing;
- :mod:`.vision`: the vision layers' features per model family, the heat maps between a
  prompt's images;
- :mod:`.checkpoint`: weights saved beside each checkpoint, loading for evaluation.

The calls a training stage makes (stage 1 freezing, weights between stages, the callback
that saves the module with each checkpoint) are ``training.emit_stages``.
"""

import importlib
from typing import Any

# Names are imported on first use: the recipe schema (training.config) reads the settings
# without loading torch and the model code.
_WHERE = {
    "EMIT_WEIGHTS_NAME": "checkpoint",
    "EmitLoad": "checkpoint",
    "load_emit_model": "checkpoint",
    "load_emit_module": "checkpoint",
    "save_emit_module": "checkpoint",
    "layered_heatmap": "heatmap",
    "patch_heatmap": "heatmap",
    "EmitError": "model",
    "EmitModule": "model",
    "attach_emit_module": "model",
    "find_emit_module": "model",
    "freeze_for_alignment": "model",
    "train_emit_module": "model",
    "HeatmapProjector": "projector",
    "SoftPrompt": "projector",
    "add_hint_placeholder": "prompts",
    "hint_task": "prompts",
    "EMIT_HINT_TASKS": "settings",
    "EMIT_SOFT_PROMPT_CUE": "settings",
    "EmitModuleSettings": "settings",
    "EmitSettingsError": "settings",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "EMIT_HINT_TASKS",
    "EMIT_SOFT_PROMPT_CUE",
    "EMIT_WEIGHTS_NAME",
    "EmitError",
    "EmitLoad",
    "EmitModule",
    "EmitModuleSettings",
    "EmitSettingsError",
    "HeatmapProjector",
    "SoftPrompt",
    "add_hint_placeholder",
    "attach_emit_module",
    "find_emit_module",
    "freeze_for_alignment",
    "hint_task",
    "layered_heatmap",
    "load_emit_model",
    "load_emit_module",
    "patch_heatmap",
    "save_emit_module",
    "train_emit_module",
]
