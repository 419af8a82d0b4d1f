"""The comparison module inside the model: one ``forward`` that every path goes through.

:func:`attach_emit_module` gives a loaded Qwen2.5-VL or InternVL3 model an ``emit``
submodule (soft prompt and projector) and switches its class to a subclass whose only change
is ``forward``. Training forward passes, TRL's ``generate`` (which calls ``forward``), TRL's
log-probability passes and the evaluation backend therefore all inject the hints the same
way, from the model's ordinary processor inputs:

1. Rows whose ``input_ids`` hold the placeholder token (exactly ``settings.num_tokens`` of
   them, written by :func:`~training.emit_module.prompts.add_hint_placeholder`) are hinted;
   other rows, and calls without placeholders (every decoding step after the first), run the
   plain model untouched.
2. With contrastive embeddings on, the model's own vision tower encodes the batch's images
   once (``get_image_features``), with hooks keeping the chosen layers' outputs; the image
   embeddings are then handed to the parent ``forward`` as ``mm_encoder_outputs`` so the
   tower does not run twice. Each hinted row's last image is the query and the images before
   it are references (our prompts show the normal template first, the query second); with
   several references the per-patch minimum over them is kept.
3. The heat map (:mod:`~training.emit_module.heatmap`) is resampled to
   ``heatmap_grid x heatmap_grid`` and projected; ``[soft prompt ; contrastive embeddings]``
   replace the placeholder embeddings through a forward hook on the input embedding layer,
   held only for the duration of the call.

Image features per family: Qwen2.5-VL's tower works on windows of merge blocks, so its layer
outputs are put back in raster order (inverse window permutation, then the 2 x 2 merge
blocks unfolded); InternVL crops an image into tiles and, when there are several, appends a
thumbnail of the whole image last: the heat map uses that last tile (the whole image at tile
size, what EMIT compares), without the CLS token.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import InternVLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration
from transformers.vision_utils import get_vision_window_index

from training.emit_module.heatmap import layered_heatmap
from training.emit_module.projector import HeatmapProjector, SoftPrompt
from training.emit_module.settings import EMIT_SOFT_PROMPT_CUE, EmitModuleSettings


class EmitError(ValueError):
    """Inputs the comparison module cannot use (placeholders without images, ...)."""


class EmitModule(nn.Module):
    """Soft prompt and heat-map projector; ``forward`` gives the hint embeddings."""

    def __init__(
        self,
        settings: EmitModuleSettings,
        hidden: int,
        placeholder_id: int,
        layers: tuple[int, ...],
    ):
        super().__init__()
        self.settings = settings
        self.hidden = hidden
        self.placeholder_id = placeholder_id
        self.layers = layers
        self.soft_prompt = (
            SoftPrompt(settings.soft_prompt_tokens, hidden) if settings.soft_prompt else None
        )
        self.projector = HeatmapProjector(hidden) if settings.contrastive else None

    @property
    def num_tokens(self) -> int:
        return self.settings.num_tokens

    def hinted_rows(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Indices of the rows holding placeholders; each must hold exactly ``num_tokens``."""
        counts = (input_ids == self.placeholder_id).sum(dim=1)
        rows = counts.nonzero().flatten()
        bad = [int(c) for c in counts[rows] if int(c) != self.num_tokens]
        if bad:
            msg = (
                f"emit module: a prompt holds {bad[0]} placeholder tokens "
                f"({self.settings.placeholder!r}); expected {self.num_tokens} "
                "(add_hint_placeholder writes them; was the prompt truncated?)"
            )
            raise EmitError(msg)
        return rows

    def forward(self, heatmaps: torch.Tensor | None, batch: int) -> torch.Tensor:
        """``(batch, num_tokens, hidden)``: soft prompt, then the projected heat maps."""
        parts = []
        if self.soft_prompt is not None:
            parts.append(self.soft_prompt(batch))
        if self.projector is not None:
            if heatmaps is None:
                raise EmitError("emit module: contrastive embeddings need heat maps")
            grid = self.settings.heatmap_grid
            if tuple(heatmaps.shape[1:]) != (grid, grid):
                heatmaps = F.interpolate(
                    heatmaps.unsqueeze(1), size=(grid, grid), mode="bilinear", antialias=True
                ).squeeze(1)
            parts.append(self.projector(heatmaps))
        return torch.cat([p.to(parts[0].dtype) for p in parts], dim=1)


# --- vision features per family ----------------------------------------------------------


@contextlib.contextmanager
def _capture(blocks: nn.ModuleList, layers: tuple[int, ...]) -> Iterator[dict[int, torch.Tensor]]:
    """Outputs of the 1-based ``layers`` of ``blocks`` during the ``with`` body, detached."""
    seen: dict[int, torch.Tensor] = {}
    handles = []
    for layer in layers:

        def hook(_module, _args, output, layer=layer):
            out = output[0] if isinstance(output, tuple) else output
            seen[layer] = out.detach()

        handles.append(blocks[layer - 1].register_forward_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def qwen_raster(tokens: torch.Tensor, grid_thw: torch.Tensor, merge: int) -> list[torch.Tensor]:
    """Per image ``(H, W, D)`` patch features from the tower's merge-block order ``(N, D)``.

    The processor emits an image's patches as ``(t, H/m, W/m, m, m)``; the first frame is
    kept (an image's ``t`` is 1).
    """
    out, start = [], 0
    for t, h, w in grid_thw.tolist():
        n = t * h * w
        x = tokens[start : start + n].reshape(t, h // merge, w // merge, merge, merge, -1)
        out.append(x.permute(0, 1, 3, 2, 4, 5).reshape(t, h, w, -1)[0])
        start += n
    return out


def unwindow(tokens: torch.Tensor, window_index: torch.Tensor, unit: int) -> torch.Tensor:
    """Undo the Qwen2.5-VL tower's window permutation of merge blocks of ``unit`` tokens."""
    inverse = torch.argsort(window_index.to(tokens.device))
    return tokens.reshape(-1, unit, tokens.shape[-1])[inverse].reshape(-1, tokens.shape[-1])


def _qwen_features(model, pixel_values, kwargs, layers):
    grid = kwargs.get("image_grid_thw")
    if grid is None:
        raise EmitError("emit module: Qwen2.5-VL inputs without image_grid_thw")
    visual = model.model.visual
    with _capture(visual.blocks, layers) as seen:
        outputs = model.model.get_image_features(pixel_values, grid, return_dict=True)
    window_index, _ = get_vision_window_index(
        grid, visual.spatial_merge_size, visual.window_size, visual.patch_size
    )
    per_layer = []
    for layer in layers:
        x = unwindow(seen[layer], window_index, visual.spatial_merge_unit)
        per_layer.append(qwen_raster(x, grid, visual.spatial_merge_size))
    images = [[per_layer[i][j] for i in range(len(layers))] for j in range(len(grid))]
    return images, outputs


def _internvl_features(model, pixel_values, runs, layers):
    with _capture(model.model.vision_tower.encoder.layer, layers) as seen:
        outputs = model.model.get_image_features(pixel_values=pixel_values, return_dict=True)
    per_tile = outputs.pooler_output.shape[1]
    images, tile = [], 0
    for run in runs:
        tiles = run // per_tile
        last = tile + tiles - 1  # the thumbnail when there are several tiles
        feats = []
        for layer in layers:
            x = seen[layer][last, 1:]  # without CLS
            side = math.isqrt(x.shape[0])
            feats.append(x.reshape(side, side, -1))
        images.append(feats)
        tile += tiles
    return images, outputs


def _image_runs(input_ids: torch.Tensor, image_token_id: int) -> tuple[list[int], list[int]]:
    """Lengths of the image-token runs in row-major order, and images per row."""
    is_img = input_ids == image_token_id
    starts = is_img & ~F.pad(is_img, (1, 0))[:, :-1]
    per_row = starts.sum(dim=1).tolist()
    ids = torch.cumsum(starts.flatten().long(), 0) * is_img.flatten()
    runs = torch.bincount(ids[ids > 0] - 1).tolist() if is_img.any() else []
    return runs, per_row


class EmitMixin:
    """The ``forward`` of a model with an ``emit`` module (see the module docstring)."""

    emit: EmitModule

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, **kwargs):
        """The parent's ``forward`` with the hints in place of the placeholder embeddings."""
        parent = super().forward
        emit = getattr(self, "emit", None)
        if emit is None or input_ids is None:
            return parent(
                input_ids=input_ids,
                pixel_values=pixel_values,
                attention_mask=attention_mask,
                **kwargs,
            )
        rows = emit.hinted_rows(input_ids)
        if len(rows) == 0:
            return parent(
                input_ids=input_ids,
                pixel_values=pixel_values,
                attention_mask=attention_mask,
                **kwargs,
            )
        heatmaps = None
        if emit.settings.contrastive:
            if pixel_values is None:
                raise EmitError("emit module: hinted prompts (placeholders) but no pixel_values")
            heatmaps, image_outputs = self._emit_heatmaps(input_ids, rows, pixel_values, kwargs)
            kwargs["mm_encoder_outputs"] = {"image": image_outputs}
            pixel_values = None
        hints = emit(heatmaps, len(rows))
        with _inject(self.get_input_embeddings(), input_ids, emit.placeholder_id, hints):
            return parent(
                input_ids=input_ids,
                pixel_values=pixel_values,
                attention_mask=attention_mask,
                **kwargs,
            )

    def _emit_heatmaps(self, input_ids, rows, pixel_values, kwargs):
        emit = self.emit
        runs, per_row = _image_runs(input_ids, self.config.image_token_id)
        if self.config.model_type == "qwen2_5_vl":
            images, outputs = _qwen_features(self, pixel_values, kwargs, emit.layers)
        else:
            images, outputs = _internvl_features(self, pixel_values, runs, emit.layers)
        first = [sum(per_row[:b]) for b in range(len(per_row))]
        maps = []
        for b in rows.tolist():
            if per_row[b] < 2:
                msg = (
                    f"emit module: a hinted prompt shows {per_row[b]} image(s); the heat map "
                    "needs a reference and a query (add_hint_placeholder leaves such prompts out)"
                )
                raise EmitError(msg)
            query = images[first[b] + per_row[b] - 1]
            refs = images[first[b] : first[b] + per_row[b] - 1]
            per_ref = [
                layered_heatmap(
                    [q[None] for q in query], [r[None] for r in ref], emit.settings.window
                )[0]
                for ref in refs
            ]
            maps.append(torch.stack(per_ref).amin(dim=0))
        grid = emit.settings.heatmap_grid
        resized = [
            F.interpolate(m[None, None], size=(grid, grid), mode="bilinear", antialias=True)[0, 0]
            for m in maps
        ]
        return torch.stack(resized), outputs


@contextlib.contextmanager
def _inject(
    embedding: nn.Module, input_ids: torch.Tensor, placeholder_id: int, hints: torch.Tensor
):
    """Replace the placeholder rows of ``embedding``'s output by ``hints`` during the body."""
    mask = (input_ids == placeholder_id).unsqueeze(-1)

    def hook(_module, args, output):
        if args and isinstance(args[0], torch.Tensor) and args[0].shape == input_ids.shape:
            return output.masked_scatter(mask.to(output.device), hints.to(output.dtype))
        return output

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _parent_signature(cls: type) -> type:
    """Give ``cls.forward`` its transformers parent's signature, minus ``mm_encoder_outputs``.

    ``generate`` validates its keyword arguments against ``forward``'s signature, and the
    evaluation backend hands pre-encoded images only to models whose ``forward`` names
    ``mm_encoder_outputs``: the heat map needs the tower's layers, so this one must not.
    """
    parent = next(c for c in cls.__mro__[1:] if c is not EmitMixin and "forward" in vars(c))
    full = inspect.signature(parent.forward)
    shown = full.replace(
        parameters=[p for n, p in full.parameters.items() if n != "mm_encoder_outputs"]
    )

    def forward(self, *args, **kwargs):
        bound = full.bind_partial(self, *args, **kwargs).arguments
        bound.pop("self")
        extra = bound.pop("kwargs", {})
        return EmitMixin.forward(self, **bound, **extra)

    forward.__signature__ = shown
    forward.__doc__ = EmitMixin.forward.__doc__
    cls.forward = forward
    return cls


@_parent_signature
class EmitQwen2_5_VLForConditionalGeneration(EmitMixin, Qwen2_5_VLForConditionalGeneration):
    """Qwen2.5-VL with EMIT's comparison module (only ``forward`` differs)."""


@_parent_signature
class EmitInternVLForConditionalGeneration(EmitMixin, InternVLForConditionalGeneration):
    """InternVL3 with EMIT's comparison module (only ``forward`` differs)."""


EMIT_CLASSES = {
    "qwen2_5_vl": EmitQwen2_5_VLForConditionalGeneration,
    "internvl": EmitInternVLForConditionalGeneration,
}


def _vision_depth(config: Any) -> int:
    vision = config.vision_config
    return int(getattr(vision, "depth", None) or vision.num_hidden_layers)


def placeholder_id(tokenizer: Any, settings: EmitModuleSettings) -> int:
    """The placeholder's token id; an error unless it is one token that never merges."""
    token = settings.placeholder
    ids = tokenizer.encode(token * 3, add_special_tokens=False)
    if len(ids) != 3 or len(set(ids)) != 1 or ids[0] == getattr(tokenizer, "unk_token_id", None):
        msg = (
            f"emit module: placeholder {token!r} is not a single token of this tokenizer "
            f"(encodes 3 copies as {ids}); set emit_module.placeholder to an unused added token"
        )
        raise EmitError(msg)
    return ids[0]


def attach_emit_module(model: Any, settings: EmitModuleSettings, tokenizer: Any) -> Any:
    """Give ``model`` an ``emit`` module (in place) and return it; inactive settings: unchanged.

    The soft prompt starts from the model's embeddings of the cue; the projector is
    randomly initialised (Kaiming, as EMIT). Load trained weights afterwards with
    :func:`~training.emit_module.checkpoint.load_emit_module`.
    """
    if not settings.active:
        return model
    model_type = model.config.model_type
    if model_type not in EMIT_CLASSES:
        msg = (
            f"emit module: model type {model_type!r} is not supported; "
            f"expected one of {sorted(EMIT_CLASSES)}"
        )
        raise EmitError(msg)
    if isinstance(model, EmitMixin):
        raise EmitError("emit module: this model already has one")
    embed = model.get_input_embeddings()
    layers = settings.vision_layers(_vision_depth(model.config))
    module = EmitModule(settings, embed.embedding_dim, placeholder_id(tokenizer, settings), layers)
    module.to(device=embed.weight.device, dtype=embed.weight.dtype)
    if module.soft_prompt is not None:
        cue = tokenizer.encode(EMIT_SOFT_PROMPT_CUE, add_special_tokens=False)
        with torch.no_grad():
            module.soft_prompt.init_from(embed(torch.tensor(cue, device=embed.weight.device)))
    model.__class__ = EMIT_CLASSES[model_type]
    model.add_module("emit", module)
    return model


def find_emit_module(model: nn.Module) -> EmitModule | None:
    """The model's comparison module (also inside a PEFT wrapper), or ``None``."""
    return next((m for m in model.modules() if isinstance(m, EmitModule)), None)


def _require(model: nn.Module) -> EmitModule:
    module = find_emit_module(model)
    if module is None:
        raise EmitError("emit module: the model has none (attach_emit_module first)")
    return module


def freeze_for_alignment(model: nn.Module) -> int:
    """EMIT's stage 1: freeze the MLLM, train only the soft prompt and the projector.

    Returns the number of trainable parameters (the module's).
    """
    own = {id(p) for p in _require(model).parameters()}
    for param in model.parameters():
        param.requires_grad_(id(param) in own)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_emit_module(model: nn.Module) -> int:
    """Make the module trainable again (PEFT's wrapping freezes all but the adapter);
    returns the number of the module's parameters."""
    params = list(_require(model).parameters())
    for param in params:
        param.requires_grad_(True)
    return sum(p.numel() for p in params)
