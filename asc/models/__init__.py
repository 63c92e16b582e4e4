"""Networks: STAP-CRNN with its pooling baselines, and the plain CNN."""

from __future__ import annotations

from torch import nn

from asc.models.cnn import CNN
from asc.models.crnn import CRNN
from asc.models.pooling import SpatioTemporalAttentionPooling
from asc.registry import MODELS, call_with


def build_model(model_cfg, n_classes: int, n_bins: int, n_frames: int | None = None) -> nn.Module:
    """Build the network registered as ``model_cfg.name`` (asc.registry.MODELS), given
    those of the arguments below it accepts."""
    return call_with(MODELS.get(model_cfg.name), n_classes=n_classes, n_bins=n_bins, n_frames=n_frames,
                     conv_channels=tuple(model_cfg.conv_channels), freq_pool=tuple(model_cfg.freq_pool),
                     time_pool=tuple(model_cfg.time_pool), dropout=model_cfg.dropout,
                     rnn_hidden=model_cfg.rnn_hidden, rnn_layers=model_cfg.rnn_layers,
                     pooling=model_cfg.pooling, spatial_attention=model_cfg.spatial_attention,
                     attention_dim=model_cfg.attention_dim, max_aux=model_cfg.get("max_aux_weight", 0) > 0)


__all__ = ["CRNN", "CNN", "SpatioTemporalAttentionPooling", "build_model"]
