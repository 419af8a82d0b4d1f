"""Vision features per model family, and the heat maps between a prompt's images.

The comparison module (:mod:`~iad_pipeline.models.emit.model`) keeps the chosen vision layers'
outputs while the model's own tower encodes the images (:func:`capture_layers`) and puts them
in raster order, one ``(H, W, D)`` map per layer and image. Qwen2.5-VL's tower works on
windows of merge blocks, so its layer outputs are put back in raster order (inverse window
permutation, then the 2 x 2 merge blocks unfolded); InternVL crops an image into tiles and,
when there are several, appends a thumbnail of the whole image last: the heat map uses that
last tile (the whole image at tile size, what EMIT compares), without the CLS token.

GRPO repeats every prompt in a batch: :func:`distinct_images` finds the copies, so
:func:`pair_heatmaps` computes each (reference, query) heat map once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers.vision_utils import get_vision_window_index

from iad_pipeline.models.emit.heatmap import layered_heatmap


@contextlib.contextmanager
def capture_layers(
    blocks: nn.ModuleList, layers: tuple[int, ...]
) -> Iterator[dict[int, torch.Tensor]]:
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


def qwen_units(backbone, seen, grid) -> list[list[torch.Tensor]]:
    """Per image, per layer ``(H, W, D)`` raster features from the captured block outputs."""
    visual = backbone.visual
    window_index, _ = get_vision_window_index(
        grid, visual.spatial_merge_size, visual.window_size, visual.patch_size
    )
    per_layer = [
        qwen_raster(
            unwindow(seen[layer], window_index, visual.spatial_merge_unit),
            grid,
            visual.spatial_merge_size,
        )
        for layer in backbone.emit.layers
    ]
    return [list(per_image) for per_image in zip(*per_layer, strict=True)]


def internvl_units(backbone, seen, _grid) -> list[list[torch.Tensor]]:
    """Per tile, per layer ``(g, g, D)`` features (CLS dropped) from the captured outputs."""
    layers = backbone.emit.layers
    tiles = seen[layers[0]].shape[0]
    side = math.isqrt(seen[layers[0]].shape[1] - 1)
    return [[seen[layer][t, 1:].reshape(side, side, -1) for layer in layers] for t in range(tiles)]


def image_runs(input_ids: torch.Tensor, image_token_id: int) -> tuple[list[int], list[int]]:
    """Lengths of the image-token runs in row-major order, and images per row."""
    is_img = input_ids == image_token_id
    starts = is_img & ~F.pad(is_img, (1, 0))[:, :-1]
    per_row = starts.sum(dim=1).tolist()
    ids = torch.cumsum(starts.flatten().long(), 0) * is_img.flatten()
    runs = torch.bincount(ids[ids > 0] - 1).tolist() if is_img.any() else []
    return runs, per_row


def distinct_images(images: list[list[torch.Tensor]]) -> list[int]:
    """For each image, the index of its first identical copy (equal first-layer features).

    GRPO repeats every prompt ``num_generations`` times in a batch: the heat map of a pair
    is computed once, not once per copy.
    """
    first: list[int] = []
    for i, feats in enumerate(images):
        match = next(
            (
                j
                for j in dict.fromkeys(first)
                if images[j][0].shape == feats[0].shape and torch.equal(images[j][0], feats[0])
            ),
            i,
        )
        first.append(match)
    return first


def pair_heatmaps(pairs: dict, images: list[list[torch.Tensor]], window: int) -> None:
    """Fill ``pairs[(reference, query)]`` with heat maps, one batched call per grid shape."""
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for ref, query in pairs:
        key = (tuple(images[query][0].shape), tuple(images[ref][0].shape))
        groups.setdefault(key, []).append((ref, query))
    for members in groups.values():
        layers = range(len(images[members[0][1]]))
        queries = [torch.stack([images[q][layer] for _, q in members]) for layer in layers]
        refs = [torch.stack([images[r][layer] for r, _ in members]) for layer in layers]
        for pair, heat in zip(members, layered_heatmap(queries, refs, window), strict=True):
            pairs[pair] = heat
