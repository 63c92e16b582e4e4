"""A clip as overlapping segments: the segments' predictions aggregated into the clip's
(:func:`aggregate_segments`, also in training and testing), their per-frame values
(attention) stitched over the clip (:func:`stitch_segments`, :func:`stitch_attention`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

VOTE_TIE_BREAK = 1e-4  # weight of the segment probabilities beside each one-hot vote


def aggregate_segments(logits: torch.Tensor, clip: torch.Tensor, n_clips: int, how: str = "mean_prob") -> torch.Tensor:
    """Clip probabilities (n_clips, C) from segment logits (S, C) and their clip ids (S,).

    ``mean_prob``: mean of segment probabilities; ``mean_logprob``: softmax of the mean
    log-probability; ``vote``: share of segments voting for each class, ties broken by the
    mean probability (each vote carries 1e-4 of the segment's probabilities, renormalised:
    less than one vote in 10 000 segments, but enough that the first class in label order
    no longer wins every tie).
    """
    logits = logits.float()
    counts = torch.zeros(n_clips, device=logits.device).index_add_(0, clip, torch.ones_like(clip, dtype=torch.float))
    if how == "mean_prob":
        per_seg = torch.softmax(logits, -1)
    elif how == "mean_logprob":
        per_seg = torch.log_softmax(logits, -1)
    elif how == "vote":
        per_seg = (F.one_hot(logits.argmax(-1), logits.shape[-1]).float() + VOTE_TIE_BREAK * torch.softmax(logits, -1)
                   ) / (1 + VOTE_TIE_BREAK)
    else:
        raise ValueError(f"unknown aggregation {how!r}")
    summed = torch.zeros(n_clips, logits.shape[-1], device=logits.device).index_add_(0, clip, per_seg)
    mean = summed / counts[:, None]
    return torch.softmax(mean, -1) if how == "mean_logprob" else mean


def segment_taper(n: int):
    """Overlap-add weights of a segment's ``n`` frames: a Hann taper, never zero.  Where
    segments overlap, each frame is taken mostly from the segment that has it near its
    middle; a segment's edge frames (distorted by padding, often given odd attention)
    count little there, so segment boundaries leave no spikes or dips."""
    i = torch.arange(n, dtype=torch.float32)
    return torch.sin(math.pi * (i + 0.5) / n) ** 2


def stitch_segments(pieces, n_frames: int):
    """Per-frame values of overlapping segments stitched over a clip of ``n_frames``
    frames: ``pieces`` holds ``(first_frame, values)`` per segment, ``values`` (L, ...) a
    tensor; the result (n_frames, ...) is the :func:`segment_taper`-weighted mean of the
    segments covering each frame (0 where none does).  A segment's values that sum to 1
    keep that level: uniform attention stays flat at 1/L."""
    out = weight = None
    for first, values in pieces:
        keep = max(0, min(len(values), n_frames - first))
        values, w = values[:keep], segment_taper(len(values))[:keep]
        if out is None:
            out = torch.zeros((n_frames, *values.shape[1:]))
            weight = torch.zeros(n_frames)
        out[first:first + len(values)] += values * w.reshape(-1, *([1] * (values.dim() - 1)))
        weight[first:first + len(values)] += w
    return out / weight.clamp_min(1e-12).reshape(-1, *([1] * (out.dim() - 1)))


def stitch_attention(attention: dict, n_clip_frames: int) -> dict:
    """A clip's attention from its segments' (:meth:`Predictor._segments`): ``temporal``
    and ``mask`` stitched over the clip's frames, ``spatial`` averaged over segments, and
    ``uniform``, the a_t of uniform attention per frame of one segment, and ``spread_time``,
    ``spread_features``, the segments' mean spread (:func:`asc.models.pooling.weight_spread`,
    of each segment's own weights: stitching and averaging would blur it)."""
    temporal = attention["temporal"]
    return {"temporal": stitch_segments(temporal, n_clip_frames).numpy(),
            "mask": stitch_segments(attention["mask"], n_clip_frames).numpy(),
            "spatial": torch.cat(attention["spatial"]).mean(0).numpy(),
            "uniform": 1.0 / len(temporal[0][1]),
            **{k: float(torch.cat(attention[k]).mean()) for k in ("spread_time", "spread_features")}}
