"""The heat map against a slow loop, its zeros and its peaks."""

from __future__ import annotations

import pytest
import torch

from iad_pipeline.models.emit.heatmap import layered_heatmap, patch_heatmap, resize_grid


def slow_heatmap(query: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """EMIT's eq. 1 written as loops over patches and window positions."""
    b, h, w, _ = query.shape
    reference = resize_grid(reference, (h, w))
    out = torch.empty(b, h, w)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                best = float("inf")
                for i2 in range(max(0, i - k), min(h, i + k + 1)):
                    for j2 in range(max(0, j - k), min(w, j + k + 1)):
                        cos = torch.nn.functional.cosine_similarity(
                            query[n, i, j], reference[n, i2, j2], dim=0, eps=1e-12
                        )
                        best = min(best, 1.0 - float(cos))
                out[n, i, j] = best
    return out


@pytest.mark.parametrize(
    ("query_grid", "ref_grid", "k", "band"),
    [
        ((5, 7), (5, 7), 0, None),  # same position only
        ((5, 7), (5, 7), 1, None),
        ((6, 4), (6, 4), 2, 1),  # bands of one row
        ((5, 7), (5, 7), 9, None),  # window larger than the grid: global minimum
        ((4, 6), (8, 5), 1, None),  # reference resized to the query's grid
    ],
)
def test_matches_the_slow_loop(query_grid, ref_grid, k, band):
    g = torch.Generator().manual_seed(sum(query_grid) + k)
    query = torch.randn(2, *query_grid, 8, generator=g)
    reference = torch.randn(2, *ref_grid, 8, generator=g)
    fast = patch_heatmap(query, reference, k, band_rows=band)
    torch.testing.assert_close(fast, slow_heatmap(query, reference, k), atol=1e-5, rtol=1e-5)


def test_zero_where_the_query_equals_the_reference():
    feats = torch.randn(1, 6, 6, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        patch_heatmap(feats, feats.clone(), 2), torch.zeros(1, 6, 6), atol=1e-6, rtol=0
    )


def test_high_where_a_patch_was_changed():
    g = torch.Generator().manual_seed(2)
    reference = torch.randn(1, 8, 8, 32, generator=g)
    query = reference.clone()
    query[0, 3, 5] = torch.randn(32, generator=g)  # a "defect" unlike anything nearby
    heat = patch_heatmap(query, reference, 1)[0]
    assert heat.argmax().item() == 3 * 8 + 5
    assert heat[3, 5] > 0.5
    others = heat.clone()
    others[3, 5] = 0
    assert others.abs().max() < 1e-5


def test_layers_are_averaged():
    g = torch.Generator().manual_seed(3)
    layers_q = [torch.randn(1, 4, 4, 8, generator=g) for _ in range(3)]
    layers_r = [torch.randn(1, 4, 4, 8, generator=g) for _ in range(3)]
    expected = sum(patch_heatmap(q, r, 1) for q, r in zip(layers_q, layers_r, strict=True)) / 3
    torch.testing.assert_close(layered_heatmap(layers_q, layers_r, 1), expected)


def test_batched_equals_one_pair_at_a_time():
    g = torch.Generator().manual_seed(4)
    query, reference = torch.randn(3, 5, 5, 8, generator=g), torch.randn(3, 5, 5, 8, generator=g)
    one_by_one = torch.cat(
        [patch_heatmap(query[i : i + 1], reference[i : i + 1], 2) for i in range(3)]
    )
    torch.testing.assert_close(patch_heatmap(query, reference, 2), one_by_one)


def test_shape_errors_are_named():
    with pytest.raises(ValueError, match="same D"):
        patch_heatmap(torch.zeros(1, 2, 2, 4), torch.zeros(1, 2, 2, 5), 1)
