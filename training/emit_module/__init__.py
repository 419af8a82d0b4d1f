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
- :mod:`.checkpoint`: weights saved beside each checkpoint, loading for evaluation;
- :mod:`.stages`: the calls a training stage makes (stage 1 freezing, weights between stages).
"""

from training.emit_module.checkpoint import (
    EMIT_WEIGHTS_NAME,
    EmitLoad,
    EmitModuleCallback,
    load_emit_model,
    load_emit_module,
    save_emit_module,
)
from training.emit_module.heatmap import layered_heatmap, patch_heatmap
from training.emit_module.model import (
    EmitError,
    EmitModule,
    attach_emit_module,
    find_emit_module,
    freeze_for_alignment,
    train_emit_module,
)
from training.emit_module.projector import HeatmapProjector, SoftPrompt
from training.emit_module.prompts import add_hint_placeholder, hint_task
from training.emit_module.settings import (
    EMIT_HINT_TASKS,
    EMIT_SOFT_PROMPT_CUE,
    EmitModuleSettings,
    EmitSettingsError,
)

__all__ = [
    "EMIT_HINT_TASKS",
    "EMIT_SOFT_PROMPT_CUE",
    "EMIT_WEIGHTS_NAME",
    "EmitError",
    "EmitLoad",
    "EmitModule",
    "EmitModuleCallback",
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
