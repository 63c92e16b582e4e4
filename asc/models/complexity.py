"""Model size and cost: parameters and multiply-accumulates (MACs) per second of audio.

MACs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the CPU (one
MAC = two FLOPs): convolutions, matrix products (linear layers, the recurrent layers'
gates, attention scorers) and batched products.  Element-wise work (batch norm,
activations, softmax, the attention-weighted sum) is not counted; it is a small share.

The network runs once on a batch of one segment (``data.segment_seconds``, the input it
is built for: ``track`` spatial attention needs that length) and the count is divided by
the segment length.  That is the cost of classifying a stream cut into back-to-back
segments; evaluation with overlapping segments (``data.eval_hop_seconds``, by default
half a segment) costs segment / hop times as much.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of ``module`` on ``inputs`` (on the CPU)."""
    module = copy.deepcopy(module).cpu().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*(x.cpu() for x in inputs))
    return int(counter.get_total_flops()) // 2


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def model_complexity(network: nn.Module, features_cfg, sample_rate: int, segment_seconds: float) -> dict:
    """Size and cost of ``network`` (a built model: standardised log spectrogram (B, F, T)
    in) behind the front-end described by ``features_cfg`` (the ``features`` config).

    Returns ``params`` (the network's trainable parameters), ``macs_per_second`` (the
    network's MACs per second of audio) and ``frontend_macs_per_second`` (the front-end's:
    its filterbank is fixed, so it has no parameters).
    """
    from asc.features import LogSpectrogram

    frontend = LogSpectrogram.from_config(features_cfg, sample_rate)
    wave = torch.zeros(1, int(round(segment_seconds * sample_rate)))
    seconds = wave.shape[1] / sample_rate
    frontend_macs = count_macs(frontend, wave)
    with torch.no_grad():
        spec = torch.randn_like(frontend(wave))
    return {"params": count_parameters(network), "macs_per_second": round(count_macs(network, spec) / seconds),
            "frontend_macs_per_second": round(frontend_macs / seconds)}


def complexity_from_config(cfg, n_classes: int) -> dict:
    """:func:`model_complexity` of the network that ``cfg`` (a full experiment config)
    builds for ``n_classes`` classes."""
    from asc.features import configured_frames
    from asc.models import build_model

    sr, f = int(cfg.data.sample_rate), cfg.features
    seconds = cfg.data.segment_seconds or 10.0  # whole clips (null): counted on 10 s of audio
    segment = int(round(seconds * sr))
    network = build_model(cfg.model, n_classes, f.n_bins, configured_frames(f, sr, segment))
    return model_complexity(network, f, sr, seconds)


def format_complexity(rows: list[dict]) -> list[str]:
    """Table lines for rows of ``{"model": name, **model_complexity(...)}``."""
    from asc.tables import format_table

    cells = [[c["model"], f"{c['params']:,d}", f"{c['macs_per_second'] / 1e6:.1f}",
              f"{c['frontend_macs_per_second'] / 1e6:.1f}"] for c in rows]
    return format_table(["model", "parameters", "MMAC per audio s", "front-end MMAC/s"], cells,
                        widths=[10, 12, 18, 18], sep="", rule=False).split("\n")
