"""The plain CNN baseline: the same conv stack, then global pooling and a classifier."""

from __future__ import annotations

import torch
from torch import nn

from asc.models.crnn import ConvStack, masked_input
from asc.registry import MODELS


@MODELS.register("cnn")
class CNN(nn.Module):
    """Conv stack -> mean over frequency -> mean + max over time -> dropout -> linear.

    Returns ``(logits, attn)`` with an empty ``attn`` (the CNN has no attention).  With a
    frame mask ``valid`` (B, T) the time mean and max run over valid frames only.
    """

    def __init__(self, n_classes: int, n_bins: int, conv_channels=(16, 32, 64), freq_pool=(4, 4, 4),
                 time_pool=(2, 1, 1), dropout: float = 0.3, **_):
        super().__init__()
        self.conv = ConvStack(conv_channels, freq_pool, time_pool)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * conv_channels[-1], n_classes))

    def forward(self, spec: torch.Tensor, valid: torch.Tensor | None = None):
        h, valid = self.conv(masked_input(spec, valid).unsqueeze(1), valid)
        h = h.mean(2)  # (B, C, T')
        if valid is None:
            z = torch.cat([h.mean(-1), h.amax(-1)], dim=1)
        else:
            w = valid.unsqueeze(1).to(h.dtype)
            mean = (h * w).sum(-1) / w.sum(-1).clamp_min(1)
            z = torch.cat([mean, h.masked_fill(~valid.unsqueeze(1), float("-inf")).amax(-1)], dim=1)
        return self.head(z), {}
