"""EMIT's projector and soft prompt: the two trainable parts of the comparison module.

The **projector** maps a heat map to a sequence of language-model embeddings: batch
normalisation of the single-channel map, one convolution into ``hidden`` channels (EMIT:
kernel 4, stride 2, padding 1, so an ``H x W`` map gives ``(H // 2) x (W // 2)`` positions),
flattened row by row. The **soft prompt** is a small embedding table initialised from the
model's own embeddings of :data:`~iad_pipeline.models.emit.settings.EMIT_SOFT_PROMPT_CUE`.
"""

from __future__ import annotations

import torch
from torch import nn


class HeatmapProjector(nn.Module):
    """``(B, H, W)`` heat maps to ``(B, (H // 2) * (W // 2), hidden)`` embeddings."""

    def __init__(self, hidden: int, *, kernel: int = 4, stride: int = 2, padding: int = 1):
        super().__init__()
        self.norm = nn.BatchNorm2d(1)
        self.conv = nn.Conv2d(1, hidden, kernel_size=kernel, stride=stride, padding=padding)
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="leaky_relu")
        nn.init.zeros_(self.conv.bias)

    def forward(self, heatmap: torch.Tensor) -> torch.Tensor:
        x = heatmap.unsqueeze(1).to(self.conv.weight)  # its dtype and device
        x = self.conv(self.norm(x))  # (B, hidden, H', W')
        return x.flatten(2).transpose(1, 2)


class SoftPrompt(nn.Module):
    """``tokens`` learnable embeddings of width ``hidden``."""

    def __init__(self, tokens: int, hidden: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(tokens, hidden))

    @torch.no_grad()
    def init_from(self, cue_embeddings: torch.Tensor) -> None:
        """Start from a cue's token embeddings ``(n, hidden)``: the first ``tokens`` of them,
        and the cue's mean embedding for positions past its length."""
        n = min(len(cue_embeddings), len(self.weight))
        self.weight[:n] = cue_embeddings[:n].to(self.weight.dtype)
        if n < len(self.weight):
            self.weight[n:] = cue_embeddings.float().mean(0).to(self.weight.dtype)

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.unsqueeze(0).expand(batch, -1, -1)
