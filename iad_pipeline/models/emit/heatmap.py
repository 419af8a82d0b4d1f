"""EMIT's heat map: each query patch's minimal cosine distance to a window of reference patches.

For one vision layer l with query features ``F^Q`` and reference features ``F^R`` on an
``m x n`` patch grid (EMIT, eq. 1)::

    H[i, j] = min { 1 - cos(F^Q[i, j], F^R[i', j']) : |i - i'| <= k, |j - j'| <= k, inside }

and the heat maps of the chosen layers are averaged (EMIT's code averages the layers' maximal
similarities and takes one minus the mean, which is the same number). High values mark query
patches that no nearby reference patch resembles: likely defects.

Choices of ours, documented:

- **Vectorised and banded.** Query rows are processed in bands of ``2k + 1`` rows; each band
  is one matrix product with the reference rows it can reach (``band + 2k`` rows), masked to
  the window and reduced with ``amax``. No Python loop over patches; the work is about
  ``3 / m`` of a full ``(mn) x (mn)`` similarity matrix and its memory is one band's.
- **Different sizes.** When the reference's grid differs from the query's (Qwen2.5-VL keeps
  each image's aspect ratio), the reference features are resized to the query's grid with
  bilinear interpolation first, so the window is defined on the query's grid.
- **No rotations.** EMIT's code also compares against the reference rotated by 90, 180 and
  270 degrees (four more vision passes per pair); we compare with the reference as given, so
  the vision tower runs once per image.
- Computed in float32 whatever the model's dtype; the result carries no gradient into the
  vision tower (EMIT computes the features under ``no_grad``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def resize_grid(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W, D)`` features bilinearly resized to ``size`` = ``(H', W')`` patches."""
    if tuple(features.shape[1:3]) == tuple(size):
        return features
    moved = features.permute(0, 3, 1, 2)
    resized = F.interpolate(moved, size=size, mode="bilinear", align_corners=False)
    return resized.permute(0, 2, 3, 1)


def patch_heatmap(
    query: torch.Tensor, reference: torch.Tensor, window: int, *, band_rows: int | None = None
) -> torch.Tensor:
    """Minimal windowed cosine distance of every query patch: ``(B, H, W)``.

    Args:
        query: ``(B, H, W, D)`` query patch features.
        reference: ``(B, H', W', D)`` reference patch features; resized to ``(H, W)`` first
            when the grids differ (module docstring).
        window: k, the window's half-width in patches (``k = 0``: the same position only).
        band_rows: query rows per matrix product; default ``2k + 1``.

    Example (k = 0 compares each patch with the one at the same position)::

        >>> q = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])   # 1 x 2 grid
        >>> r = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])   # the same two patches, swapped
        >>> patch_heatmap(q, r, 0)
        tensor([[[1., 1.]]])
        >>> patch_heatmap(q, r, 1)                           # the window reaches the neighbour
        tensor([[[0., 0.]]])
    """
    if query.ndim != 4 or reference.ndim != 4 or query.shape[-1] != reference.shape[-1]:
        msg = (
            f"patch_heatmap: expected (B, H, W, D) query and reference features with the same "
            f"D, got {tuple(query.shape)} and {tuple(reference.shape)}"
        )
        raise ValueError(msg)
    batch, rows, cols, dim = query.shape
    q = F.normalize(query.detach().float(), dim=-1)
    r = F.normalize(resize_grid(reference.detach().float(), (rows, cols)), dim=-1)
    step = band_rows or (2 * window + 1)
    col = torch.arange(cols, device=q.device)
    col_ok = (col[:, None] - col[None, :]).abs() <= window  # (W, W')
    out = torch.empty(batch, rows, cols, device=q.device)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        a0, a1 = max(0, r0 - window), min(rows, r1 + window)
        sim = q[:, r0:r1].reshape(batch, -1, dim) @ r[:, a0:a1].reshape(batch, -1, dim).mT
        qi = torch.arange(r0, r1, device=q.device)
        ri = torch.arange(a0, a1, device=q.device)
        row_ok = (qi[:, None] - ri[None, :]).abs() <= window  # (band, reach)
        ok = (row_ok[:, None, :, None] & col_ok[None, :, None, :]).reshape(sim.shape[1:])
        best = sim.masked_fill(~ok, float("-inf")).amax(dim=-1)
        out[:, r0:r1] = (1.0 - best).reshape(batch, r1 - r0, cols)
    return out


def layered_heatmap(
    queries: Sequence[torch.Tensor], references: Sequence[torch.Tensor], window: int
) -> torch.Tensor:
    """EMIT's aggregate: the mean over layers of :func:`patch_heatmap`, ``(B, H, W)``.

    ``queries[i]`` and ``references[i]`` are one layer's ``(B, H, W, D)`` features.
    """
    if not queries or len(queries) != len(references):
        msg = f"layered_heatmap: {len(queries)} query layers and {len(references)} reference layers"
        raise ValueError(msg)
    maps = [patch_heatmap(q, r, window) for q, r in zip(queries, references, strict=True)]
    return torch.stack(maps).mean(dim=0)
