"""Pooling of a recurrent output O (B, T, D) into one vector per clip.

All poolings take ``o`` (B, T, D) and an optional frame mask ``valid`` (B, T) bool (True
for frames that hold sound, False for padding; None: every frame is valid) and return
``(z, attn)`` where ``attn`` holds ``temporal`` (B, T), ``spatial`` (B, D) and ``mask``
(B, T, D), so that every variant can be logged and plotted the same way.  Padded frames
never enter a pooled vector: attention is a softmax over valid frames only (padding gets
exactly 0), mean and max run over valid frames only.
"""

from __future__ import annotations

import torch
from torch import nn

from asc.registry import POOLINGS, call_with


def masked_softmax(scores: torch.Tensor, valid: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """Softmax over ``dim`` with invalid positions at exactly 0 (every row keeps at least
    one valid position: callers guarantee one valid frame per clip)."""
    if valid is not None:
        scores = scores.masked_fill(~valid, float("-inf"))
    return torch.softmax(scores, dim=dim)


def uniform_weights(o: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(B, T) weights 1/T_valid on valid frames and 0 on padding."""
    if valid is None:
        return o.new_full(o.shape[:2], 1.0 / o.shape[1])
    w = valid.to(o.dtype)
    return w / w.sum(1, keepdim=True).clamp_min(1)


def masked_mean(o: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Time-mean (B, D) of o (B, T, D) over valid frames."""
    return (uniform_weights(o, valid).unsqueeze(-1) * o).sum(1)


class TemporalAttention(nn.Module):
    """a_t = softmax_t( v_a^T tanh(W_a o_t + b_a) ), a in R^T."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)

    def forward(self, o: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return masked_softmax(self.score(torch.tanh(self.proj(o))).squeeze(-1), valid)


class SpatialAttention(nn.Module):
    """s = softmax_d(score_d), s in R^D, over the D feature tracks of O.

    ``variant="summary"``: scores from the time-mean of O through a small MLP (any T).
    ``variant="track"``: score_d = v_s^T tanh(W_s o^(d) + b_s) with o^(d) in R^T the d-th
    feature's time track; needs ``n_frames`` (fixed T).
    """

    def __init__(self, dim: int, hidden: int = 64, variant: str = "summary", n_frames: int | None = None):
        super().__init__()
        self.variant = variant
        if variant == "summary":
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        elif variant == "track":
            if not n_frames:
                raise ValueError("spatial attention 'track' needs a fixed number of frames (n_frames)")
            self.n_frames = n_frames
            self.proj = nn.Linear(n_frames, hidden)
            self.score = nn.Linear(hidden, 1, bias=False)
        else:
            raise ValueError(f"unknown spatial attention variant {variant!r}")

    def forward(self, o: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if self.variant == "summary":
            scores = self.mlp(masked_mean(o, valid))
        else:
            if o.shape[1] != self.n_frames:
                raise ValueError(f"'track' spatial attention was built for T={self.n_frames}, got T={o.shape[1]}")
            if valid is not None:  # padding enters the fixed-T projection as zeros
                o = o * valid.unsqueeze(-1).to(o.dtype)
            scores = self.score(torch.tanh(self.proj(o.transpose(1, 2)))).squeeze(-1)
        return torch.softmax(scores, dim=-1)


def weight_spread(weights: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Spread (B,) of attention weights (B, N) over their valid positions (B, N) bool:
    exp(entropy) / count, 1.0 for uniform weights (as mean pooling), 1/count for all
    weight on one frame or feature.  ``asc attention`` and ``val/attention_spread_*``."""
    w = weights.double() if valid is None else weights.double() * valid  # float32 rounding gave 1.000002
    w = w / w.sum(-1, keepdim=True)
    count = w.shape[-1] if valid is None else valid.sum(-1).clamp_min(1)
    return (torch.exp(-torch.xlogy(w, w).sum(-1)) / count).clamp(max=1.0).float()


def _outer(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return a.unsqueeze(2) * s.unsqueeze(1)


@POOLINGS.register("stap", spatial=True)
class SpatioTemporalAttentionPooling(nn.Module):
    """Spatio-temporal attention pooling (Phan et al., INTERSPEECH 2019).

    The mask M = a s^T (B, T, D) is the outer product of the temporal vector a (sums to 1
    over T) and the spatial vector s (sums to 1 over D), so it sums to 1; the pooled vector
    is z = D * sum_t (M * O)_t.  The factor D makes a uniform spatial vector give exactly
    temporal attention pooling, z = sum_t a_t o_t.

    Parameters
    ----------
    dim : int
        D, the feature size of O.
    hidden : int
        Hidden size of both attention scorers.
    spatial : str
        ``summary`` or ``track`` (see :class:`SpatialAttention`).
    n_frames : int, optional
        T, required by ``track``.
    """

    def __init__(self, dim: int, hidden: int = 64, spatial: str = "summary", n_frames: int | None = None):
        super().__init__()
        self.dim = dim
        self.temporal = TemporalAttention(dim, hidden)
        self.spatial = SpatialAttention(dim, hidden, spatial, n_frames)

    def forward(self, o: torch.Tensor, valid: torch.Tensor | None = None):
        return self.pool(o, self.temporal(o, valid), self.spatial(o, valid))

    def pool(self, o: torch.Tensor, a: torch.Tensor, s: torch.Tensor):
        mask = _outer(a, s)
        z = self.dim * (mask * o).sum(1)
        return z, {"temporal": a, "spatial": s, "mask": mask}


@POOLINGS.register("temporal")
class TemporalAttentionPooling(SpatioTemporalAttentionPooling):
    """Temporal attention only: the spatial vector is uniform, z = sum_t a_t o_t."""

    def __init__(self, dim: int, hidden: int = 64, **_):
        nn.Module.__init__(self)
        self.dim = dim
        self.temporal = TemporalAttention(dim, hidden)

    def forward(self, o: torch.Tensor, valid: torch.Tensor | None = None):
        s = o.new_full((o.shape[0], o.shape[2]), 1.0 / o.shape[2])
        return self.pool(o, self.temporal(o, valid), s)


@POOLINGS.register("spatial", spatial=True)
class SpatialAttentionPooling(SpatioTemporalAttentionPooling):
    """Spatial attention only: the temporal vector is uniform, z = D * s ⊙ mean_t(o_t)."""

    def __init__(self, dim: int, hidden: int = 64, spatial: str = "summary", n_frames: int | None = None):
        nn.Module.__init__(self)
        self.dim = dim
        self.spatial = SpatialAttention(dim, hidden, spatial, n_frames)

    def forward(self, o: torch.Tensor, valid: torch.Tensor | None = None):
        return self.pool(o, uniform_weights(o, valid), self.spatial(o, valid))


@POOLINGS.register("mean")
class MeanPooling(nn.Module):
    """Average over time (both attention vectors uniform)."""

    def forward(self, o: torch.Tensor, valid: torch.Tensor | None = None):
        a, s = uniform_weights(o, valid), o.new_full((o.shape[0], o.shape[2]), 1.0 / o.shape[2])
        return (a.unsqueeze(-1) * o).sum(1), {"temporal": a, "spatial": s, "mask": _outer(a, s)}


@POOLINGS.register("max")
class MaxPooling(nn.Module):
    """Maximum over time.  Its 'temporal attention' is the share of the D features that
    take their maximum at each frame, so where max pooling looks can be plotted too."""

    def forward(self, o: torch.Tensor, valid: torch.Tensor | None = None):
        b, t, d = o.shape
        if valid is not None:
            o = o.masked_fill(~valid.unsqueeze(-1), float("-inf"))
        z, idx = o.max(1)
        a = torch.zeros(b, t, device=o.device, dtype=z.dtype).scatter_add_(1, idx, z.new_ones(b, d)) / d
        s = z.new_full((b, d), 1.0 / d)
        return z, {"temporal": a, "spatial": s, "mask": _outer(a, s)}


def build_pooling(name: str, dim: int, hidden: int = 64, spatial: str = "summary",
                  n_frames: int | None = None) -> nn.Module:
    """The pooling registered as ``name``, given those of its arguments it accepts."""
    return call_with(POOLINGS.get(name), dim=dim, hidden=hidden, spatial=spatial, n_frames=n_frames)
