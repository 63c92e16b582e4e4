"""Convolutional-recurrent network with attention pooling (STAP-CRNN, Phan et al. 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asc.models.pooling import build_pooling
from asc.registry import MODELS


class ConvBlock(nn.Sequential):
    """(Conv 3x3 -> BatchNorm -> ReLU) x 2 -> max-pool (freq_pool, time_pool)."""

    def __init__(self, c_in: int, c_out: int, freq_pool: int, time_pool: int):
        layers = []
        for c in (c_in, c_out):
            layers += [nn.Conv2d(c, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d((freq_pool, time_pool), ceil_mode=True))
        super().__init__(*layers)
        self.time_pool = time_pool

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None):
        for layer in self:
            x = layer(x)
            if valid is not None and isinstance(layer, nn.ReLU):
                # padded frames back to 0, as the next conv's zero padding at a clip's end:
                # valid frames then see exactly what they would see without the padding
                x = x * valid[:, None, None, :].to(x.dtype)
        return x, pool_mask(valid, (self.time_pool,))


class ConvStack(nn.Sequential):
    """Conv blocks on a (B, 1, F, T) image; pools mostly along frequency so that time
    resolution survives for the recurrent layers.  With a frame mask ``valid`` (B, T),
    padded frames are zeroed after every activation (ReLU outputs are >= 0, so a zero
    never wins a max-pool over valid frames): in eval mode a clip's valid frames come out
    exactly as without padding.  Returns the features and the pooled mask."""

    def __init__(self, channels, freq_pool, time_pool):
        blocks, c_in = [], 1
        for c, fp, tp in zip(channels, freq_pool, time_pool):
            blocks.append(ConvBlock(c_in, c, fp, tp))
            c_in = c
        super().__init__(*blocks)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None):
        for block in self:
            x, valid = block(x, valid)
        return x, valid

    @staticmethod
    def out_size(n: int, pools) -> int:
        for p in pools:
            n = -(-n // p)  # ceil_mode pooling
        return n


def pool_mask(valid: torch.Tensor | None, time_pool) -> torch.Tensor | None:
    """Frame mask (B, T) -> (B, T') after the conv stack's time pooling: a pooled frame is
    valid when any frame it covers is (ceil mode, like the max-pooling it follows)."""
    if valid is None:
        return None
    v = valid.float().unsqueeze(1)
    for p in time_pool:
        if p > 1:
            v = F.max_pool1d(v, p, ceil_mode=True)
    return v.squeeze(1) > 0


def masked_input(spec: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Padded frames of a standardised spectrogram set to 0 (the band mean), so that the
    convolutions and BatchNorm see padding as an average frame, not as log(eps) silence."""
    return spec if valid is None else spec * valid.unsqueeze(1).to(spec.dtype)


@MODELS.register("crnn", pooled=True)  # pooled: model.pooling picks its pooling
class CRNN(nn.Module):
    """Conv stack -> BiGRU -> pooling -> dropout -> linear.

    Input: standardised log spectrogram (B, F, T) and an optional frame mask ``valid``
    (B, T) for batches of clips of different lengths padded to the longest.  Output:
    ``(logits (B, C), attn)`` with ``attn`` the pooling's dict of ``temporal`` (B, T'),
    ``spatial`` (B, D) and ``mask`` (B, T', D), T' the frame count after time pooling.

    With a mask: padded frames enter the convolutions as zeros (of the standardised
    spectrogram, and of every activation: :class:`ConvStack`), so in eval mode a clip's
    output does not depend on the batch it is padded in; in training, BatchNorm's batch
    statistics include those zeros.  The BiGRU runs on packed sequences, so it sees only
    each clip's valid frames in both directions; pooling and attention ignore padding
    (see :mod:`asc.models.pooling`).

    ``max_aux=True`` adds a second classifier on the time-max of the recurrent output; in
    training mode its logits come back as ``attn["max_logits"]`` for an auxiliary loss.
    """

    def __init__(self, n_classes: int, n_bins: int, n_frames: int | None = None, conv_channels=(16, 32, 64),
                 freq_pool=(4, 4, 4), time_pool=(2, 1, 1), rnn_hidden: int = 64, rnn_layers: int = 1,
                 pooling: str = "stap", spatial_attention: str = "summary", attention_dim: int = 64,
                 dropout: float = 0.3, max_aux: bool = False):
        super().__init__()
        self.conv = ConvStack(conv_channels, freq_pool, time_pool)
        f_out = ConvStack.out_size(n_bins, freq_pool)
        t_out = ConvStack.out_size(n_frames, time_pool) if n_frames else None
        self.rnn = nn.GRU(conv_channels[-1] * f_out, rnn_hidden, num_layers=rnn_layers, batch_first=True,
                          bidirectional=True, dropout=dropout if rnn_layers > 1 else 0.0)
        dim = 2 * rnn_hidden
        self.pool = build_pooling(pooling, dim, attention_dim, spatial_attention, t_out)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n_classes))
        # auxiliary max-pooling classifier (model.max_aux_weight > 0), used in training only
        self.max_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n_classes)) if max_aux else None

    def forward(self, spec: torch.Tensor, valid: torch.Tensor | None = None):
        h, valid = self.conv(masked_input(spec, valid).unsqueeze(1), valid)  # (B, C, F', T'), (B, T')
        h = h.flatten(1, 2).transpose(1, 2)  # (B, T', C*F')
        if valid is None or bool(valid.all()):
            o, _ = self.rnn(h)  # (B, T', D)
            valid = None
        else:
            lengths = valid.sum(1).clamp_min(1).cpu()
            packed = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            o, _ = self.rnn(packed)
            o, _ = pad_packed_sequence(o, batch_first=True, total_length=h.shape[1])
        z, attn = self.pool(o, valid)
        if self.max_head is not None and self.training:
            peak = o if valid is None else o.masked_fill(~valid.unsqueeze(-1), float("-inf"))
            attn = {**attn, "max_logits": self.max_head(peak.amax(1))}
        return self.head(z), attn
