"""The comparison module inside the model: one ``forward`` that every path goes through.

:func:`attach_emit_module` gives a loaded Qwen2.5-VL or InternVL3 model's backbone
(``model.model``: ``Qwen2_5_VLModel``, ``InternVLModel``) an ``emit`` submodule (soft prompt
and projector) and switches the backbone's class to a subclass whose only change is
``forward``. The model's own class is untouched (``save_pretrained`` and vLLM see the stock
architecture). Every path reaches the backbone's ``forward``: training forward passes, TRL's
``generate``, TRL's log-probabilities (its fused LM head calls the backbone directly) and the
evaluation backend; so all inject the hints the same way, from the ordinary processor inputs:

1. Rows whose ``input_ids`` hold the placeholder token (exactly ``settings.num_tokens`` of
   them, written by :func:`~iad_pipeline.models.emit.prompts.add_hint_placeholder`) are hinted;
   other rows, and calls without placeholders (every decoding step after the first), run the
   plain model untouched.
2. With contrastive embeddings on, the model's own vision tower encodes the batch's images
   once (``get_image_features``), with hooks keeping the chosen layers' outputs; the image
   embeddings are then handed to the parent ``forward`` as ``mm_encoder_outputs`` so the
   tower does not run twice. Each hinted row's last image is the query and the images before
   it are references (our prompts show the normal template first, the query second); with
   several references the per-patch minimum over them is kept.
3. The heat map (:mod:`~iad_pipeline.models.emit.heatmap`) is resampled to
   ``heatmap_grid x heatmap_grid`` and projected; ``[soft prompt ; contrastive embeddings]``
   replace the placeholder embeddings through a forward hook on the input embedding layer,
   held only for the duration of the call (or are written into ``inputs_embeds`` when the
   caller passes embeddings).

Image features per family and the heat maps between a prompt's images:
:mod:`~iad_pipeline.models.emit.vision`.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import InternVLModel, Qwen2_5_VLModel

from iad_pipeline.models.emit.projector import HeatmapProjector, SoftPrompt
from iad_pipeline.models.emit.settings import EMIT_SOFT_PROMPT_CUE, EmitModuleSettings
from iad_pipeline.models.emit.vision import (
    capture_layers,
    distinct_images,
    image_runs,
    internvl_units,
    pair_heatmaps,
    qwen_units,
)


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


class EmitMixin:
    """The backbone of a model with an ``emit`` module (see the module docstring).

    It sits on the backbone (``Qwen2_5_VLModel``, ``InternVLModel``), not on the
    ``...ForConditionalGeneration`` head, because TRL's fused LM head computes log-probabilities
    by calling the backbone directly. Two methods change:

    - ``get_image_features`` also keeps the chosen vision layers' outputs, in raster order, as
      ``emit_features`` on its result (``generate`` encodes the images before the first
      forward pass with it and hands the result over as ``mm_encoder_outputs``);
    - ``forward`` computes the heat maps from them and injects the hints.
    """

    emit: EmitModule
    _emit_units = None  # set per family: captured block outputs -> per-unit features

    def get_image_features(self, pixel_values, *args, **kwargs):
        """The parent's image features, plus ``emit_features`` (see the class docstring)."""
        parent = super().get_image_features
        emit = getattr(self, "emit", None)
        if emit is None or not emit.settings.contrastive:
            return parent(pixel_values, *args, **kwargs)
        blocks = self.visual.blocks if hasattr(self, "visual") else self.vision_tower.encoder.layer
        with capture_layers(blocks, emit.layers) as seen:
            out = parent(pixel_values, *args, **kwargs)
        grid = args[0] if args else kwargs.get("image_grid_thw")
        out.emit_features = type(self)._emit_units(self, seen, grid)
        return out

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, **kwargs):
        """The parent's ``forward`` with the hints in place of the placeholder embeddings."""
        parent = super().forward
        emit = getattr(self, "emit", None)
        rows = None if emit is None or input_ids is None else emit.hinted_rows(input_ids)
        if rows is None or len(rows) == 0:
            return parent(
                input_ids=input_ids,
                pixel_values=pixel_values,
                attention_mask=attention_mask,
                **kwargs,
            )
        heatmaps = None
        if emit.settings.contrastive:
            encoded = dict(kwargs.get("mm_encoder_outputs") or {})
            if encoded.get("image") is None:
                if pixel_values is None:
                    msg = "emit module: hinted prompts (placeholders) but no pixel_values"
                    raise EmitError(msg)
                encoded["image"] = self._encode(pixel_values, kwargs)
                kwargs["mm_encoder_outputs"] = encoded
                pixel_values = None
            heatmaps = self._emit_heatmaps(input_ids, rows, encoded["image"])
        hints = emit(heatmaps, len(rows))
        mask = (input_ids == emit.placeholder_id).unsqueeze(-1)
        if kwargs.get("inputs_embeds") is not None:  # embeddings given: write into them
            embeds = kwargs["inputs_embeds"]
            kwargs["inputs_embeds"] = embeds.masked_scatter(mask, hints.to(embeds.dtype))
            context = contextlib.nullcontext()
        else:
            context = _inject(self.get_input_embeddings(), input_ids, mask, hints)
        with context:
            return parent(
                input_ids=input_ids,
                pixel_values=pixel_values,
                attention_mask=attention_mask,
                **kwargs,
            )

    def _encode(self, pixel_values, kwargs):
        """``get_image_features`` on the forward's own arguments (what the parent would do)."""
        if hasattr(self, "visual"):
            grid = kwargs.get("image_grid_thw")
            if grid is None:
                raise EmitError("emit module: Qwen2.5-VL inputs without image_grid_thw")
            return self.get_image_features(pixel_values, grid, return_dict=True)
        return self.get_image_features(
            pixel_values,
            vision_feature_layer=kwargs.get("vision_feature_layer"),
            vision_feature_select_strategy=kwargs.get("vision_feature_select_strategy"),
            return_dict=True,
        )

    def _emit_heatmaps(self, input_ids, rows, image_outputs) -> torch.Tensor:
        """``(rows, grid, grid)`` heat maps: each hinted row's query against its references."""
        emit = self.emit
        units = getattr(image_outputs, "emit_features", None)
        if units is None:
            msg = (
                "emit module: pre-encoded images without the module's layer features; encode "
                "them with the model's own get_image_features, or pass pixel_values"
            )
            raise EmitError(msg)
        runs, per_row = image_runs(input_ids, self.config.image_token_id)
        if hasattr(self, "visual"):
            images = units  # one unit per image
        else:  # one unit per tile: an image's last tile is its thumbnail (or its only tile)
            per_tile = image_outputs.pooler_output.shape[1]
            ends = torch.tensor(runs).div(per_tile, rounding_mode="floor").cumsum(0) - 1
            images = [units[int(e)] for e in ends]
        first = [sum(per_row[:b]) for b in range(len(per_row))]
        same = distinct_images(images)
        pairs: dict[tuple[int, int], torch.Tensor | None] = {}  # (reference, query) -> map
        row_pairs = []
        for b in rows.tolist():
            if per_row[b] < 2:
                msg = (
                    f"emit module: a hinted prompt shows {per_row[b]} image(s); the heat map "
                    "needs a reference and a query (add_hint_placeholder leaves such prompts out)"
                )
                raise EmitError(msg)
            query = same[first[b] + per_row[b] - 1]
            refs = [same[i] for i in range(first[b], first[b] + per_row[b] - 1)]
            row_pairs.append([(r, query) for r in refs])
            pairs.update({(r, query): None for r in refs})
        pair_heatmaps(pairs, images, emit.settings.window)
        grid = emit.settings.heatmap_grid
        maps = []
        for ref_query in row_pairs:
            heat = torch.stack([pairs[p] for p in ref_query]).amin(dim=0)
            maps.append(
                F.interpolate(heat[None, None], size=(grid, grid), mode="bilinear", antialias=True)
            )
        return torch.cat(maps)[:, 0]


@contextlib.contextmanager
def _inject(embedding: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor, hints: torch.Tensor):
    """Replace the ``mask``ed rows of ``embedding``'s output by ``hints`` during the body."""

    def hook(_module, args, output):
        if args and isinstance(args[0], torch.Tensor) and args[0].shape == input_ids.shape:
            return output.masked_scatter(mask.to(output.device), hints.to(output.dtype))
        return output

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _parent_signatures(cls: type) -> type:
    """Give ``cls``'s ``forward`` and ``get_image_features`` their transformers parent's
    signatures: positional calls bind as the parent's do, and ``generate``, which picks the
    arguments of ``get_image_features`` by signature, sees the parent's parameters."""
    for name in ("forward", "get_image_features"):
        parent = next(c for c in cls.__mro__[1:] if c is not EmitMixin and name in vars(c))
        full = inspect.signature(getattr(parent, name))
        mixin = getattr(EmitMixin, name)

        def method(self, *args, _full=full, _mixin=mixin, **kwargs):
            bound = _full.bind_partial(self, *args, **kwargs).arguments
            bound.pop("self")
            extra = bound.pop("kwargs", {})
            return _mixin(self, **bound, **extra)

        method.__signature__ = full
        method.__doc__ = mixin.__doc__
        method.__name__ = name
        setattr(cls, name, method)
    return cls


@_parent_signatures
class EmitQwen2_5_VLModel(EmitMixin, Qwen2_5_VLModel):
    """Qwen2.5-VL's backbone with EMIT's comparison module."""

    _emit_units = qwen_units


@_parent_signatures
class EmitInternVLModel(EmitMixin, InternVLModel):
    """InternVL3's backbone with EMIT's comparison module."""

    _emit_units = internvl_units


EMIT_BACKBONES = {"qwen2_5_vl": EmitQwen2_5_VLModel, "internvl": EmitInternVLModel}


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
    :func:`~iad_pipeline.models.emit.checkpoint.load_emit_module`.
    """
    if not settings.active:
        return model
    model_type = model.config.model_type
    if model_type not in EMIT_BACKBONES:
        msg = (
            f"emit module: model type {model_type!r} is not supported; "
            f"expected one of {sorted(EMIT_BACKBONES)}"
        )
        raise EmitError(msg)
    if find_emit_module(model) is not None:
        raise EmitError("emit module: this model already has one")
    embed = model.get_input_embeddings()
    layers = settings.vision_layers(_vision_depth(model.config))
    module = EmitModule(settings, embed.embedding_dim, placeholder_id(tokenizer, settings), layers)
    module.to(device=embed.weight.device, dtype=embed.weight.dtype)
    if module.soft_prompt is not None:
        cue = tokenizer.encode(EMIT_SOFT_PROMPT_CUE, add_special_tokens=False)
        with torch.no_grad():
            module.soft_prompt.init_from(embed(torch.tensor(cue, device=embed.weight.device)))
    backbone = model.model
    backbone.__class__ = EMIT_BACKBONES[model_type]
    backbone.add_module("emit", module)
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
