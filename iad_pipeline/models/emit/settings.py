"""The ``emit_module`` option block: EMIT's soft prompt and contrastive embeddings, switched.

A recipe embeds it as ``emit_module: {enabled, soft_prompt, contrastive, layers, window,
soft_prompt_tokens, heatmap_grid}``; :meth:`EmitModuleSettings.from_mapping` validates it
(unknown keys and wrong types are errors). The switches give EMIT's ablation rows (Table 3):
``soft_prompt: false`` is "w/o SP", ``contrastive: false`` is "w/o CE", both false (or
``enabled: false``) is "w/o SP & CE", the plain model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# The text cue the soft prompt starts from: shared/papers/emit.txt, section "Soft Prompt". The
# released code (guanwei49/EMIT, commit 01dc319236eda9be13e14918cf9a5bf0d5c7a030,
# model/internvl_chat/modeling_internvl_chat.py, _init_weights) loads the cue's 9 embeddings
# from soft_prompt_ini.pt instead of embedding the text. Benchmark prompt strings belong in
# iad_pipeline/questions/prompts.py: this constant should move there once that file is free.
EMIT_SOFT_PROMPT_CUE = "Below are some hints for your reference:"
# Question tasks that get the hints (EMIT: "provided exclusively for tasks such as anomaly
# discrimination and defect localization"); our task names and MMAD's question types.
EMIT_HINT_TASKS = ("anomaly_detection", "defect_localization")
# An existing token of every Qwen2/Qwen2.5 tokenizer (Qwen2.5-VL and InternVL3 alike) that
# no prompt of the project contains: repeated N times it marks where the hints go, so the
# sequence length is known before tokenization and no vocabulary is resized.
DEFAULT_PLACEHOLDER = "<|fim_pad|>"
# EMIT's relative vision layers: it reads hidden_states[4, 8, 16, 20] of the 24-layer
# InternViT-300M (same file and commit, CustomizedInternVLChatModel.__init__, self.layers;
# neighbor_dis 6 is the window k, num_soft_prompt_tokens 9, projector BatchNorm2d(1) then
# Conv2d(1, hidden, 4, stride 2, padding 1)).
EMIT_LAYER_FRACTIONS = (4 / 24, 8 / 24, 16 / 24, 20 / 24)


class EmitSettingsError(ValueError):
    """An invalid ``emit_module`` block."""


@dataclasses.dataclass(frozen=True)
class EmitModuleSettings:
    """EMIT's comparison module, as a recipe configures it.

    Attributes:
        enabled: add the module at all (false: the plain model, no placeholder anywhere).
        soft_prompt: the learnable soft prompt (EMIT's ablation "w/o SP" sets it false).
        contrastive: the heat-map contrastive embeddings ("w/o CE" sets it false).
        layers: vision layers whose outputs are compared, 1-based (``l`` = the output of the
            l-th block, ``hidden_states[l]`` in transformers' convention). ``None``: EMIT's
            4/24, 8/24, 16/24, 20/24 of the tower's depth (4, 8, 16, 20 for InternViT-300M;
            5, 11, 21, 27 for Qwen2.5-VL's 32 blocks).
        window: k, the half-width in patches of the reference window each query patch is
            compared with (EMIT's ``neighbor_dis``, default 6).
        soft_prompt_tokens: soft prompt length (EMIT: 9). Initialised from the cue's token
            embeddings; positions past the cue's length start from the cue's mean embedding.
        heatmap_grid: side of the square grid the heat map is resampled to before the
            projector (EMIT: 32, a 448-pixel tile in 14-pixel patches), so the contrastive
            embeddings always number ``(heatmap_grid // 2) ** 2`` (256) whatever the image size.
        placeholder: the prompt token the hints replace.
    """

    enabled: bool = True
    soft_prompt: bool = True
    contrastive: bool = True
    layers: tuple[int, ...] | None = None
    window: int = 6
    soft_prompt_tokens: int = 9
    heatmap_grid: int = 32
    placeholder: str = DEFAULT_PLACEHOLDER

    def __post_init__(self) -> None:
        for name in ("enabled", "soft_prompt", "contrastive"):
            if not isinstance(getattr(self, name), bool):
                raise EmitSettingsError(f"emit_module.{name}: expected true or false")
        for name, low in (("window", 0), ("soft_prompt_tokens", 1), ("heatmap_grid", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                msg = f"emit_module.{name}={value!r}: expected an integer >= {low}"
                raise EmitSettingsError(msg)
        if self.layers is not None:
            layers = self.layers
            if (
                not isinstance(layers, tuple | list)
                or not layers
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in layers)
            ):
                msg = f"emit_module.layers={layers!r}: expected a non-empty list of integers >= 1"
                raise EmitSettingsError(msg)
            object.__setattr__(self, "layers", tuple(layers))
        if not isinstance(self.placeholder, str) or not self.placeholder:
            raise EmitSettingsError("emit_module.placeholder: expected a non-empty token string")

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any] | None, *, source: str = "recipe"
    ) -> EmitModuleSettings:
        """Settings from a recipe's ``emit_module`` mapping; ``None`` means disabled."""
        if data is None:
            return cls(enabled=False)
        if not isinstance(data, Mapping):
            raise EmitSettingsError(
                f"{source}: emit_module must be a mapping, got {type(data).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = (
                f"{source}: emit_module has unknown keys {unknown}; "
                f"expected some of {sorted(known)}"
            )
            raise EmitSettingsError(msg)
        try:
            return cls(**dict(data))
        except EmitSettingsError as exc:
            raise EmitSettingsError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["layers"] = list(self.layers) if self.layers is not None else None
        return out

    @property
    def active(self) -> bool:
        """Whether any hint is injected (enabled, with at least one of its two parts)."""
        return self.enabled and (self.soft_prompt or self.contrastive)

    @property
    def contrastive_tokens(self) -> int:
        return (self.heatmap_grid // 2) ** 2 if self.contrastive else 0

    @property
    def num_tokens(self) -> int:
        """Placeholder tokens per hinted prompt: soft prompt, then contrastive embeddings."""
        if not self.active:
            return 0
        return (self.soft_prompt_tokens if self.soft_prompt else 0) + self.contrastive_tokens

    def vision_layers(self, depth: int) -> tuple[int, ...]:
        """The 1-based vision layers to compare for a tower of ``depth`` blocks."""
        if self.layers is None:
            picked = [min(depth, max(1, round(f * depth))) for f in EMIT_LAYER_FRACTIONS]
            return tuple(sorted(set(picked)))
        too_deep = [v for v in self.layers if v > depth]
        if too_deep:
            msg = f"emit_module.layers {too_deep} exceed the vision tower's {depth} layers"
            raise EmitSettingsError(msg)
        return self.layers
