"""Inference with a trained network: ``load(checkpoint) -> Predictor``.

A :class:`Predictor` is the feature pipeline (front-end and band statistics) and the
network of a checkpoint, with clip-level inference and attention stitching
(:meth:`Predictor.analyse_clip`; the segment arithmetic is :mod:`asc.segments`).
``asc predict``, ``asc attention``, ``asc export``, the attention-picture callback and the
notebooks use it; during training :meth:`Predictor.of`
wraps the live module's network and the DataModule's pipeline.  A checkpoint holds the
network under ``state_dict`` (``model.*``; with ``optim.ema_epochs`` also its weight average,
``ema.module.*``, which inference uses) and the band statistics under the DataModule's
key; the filterbank is rebuilt from the stored config.  Checkpoints are loaded with
``weights_only=True``: nothing but tensors and plain containers is unpickled.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from asc.checkpoints import checkpoint_file_problem, resolve_checkpoint
from asc.config_validation import needs_fixed_frames
from asc.data.audio import display_name
from asc.data.batches import segment_samples, segment_starts
from asc.errors import AscError
from asc.features import configured_frames, n_frames
from asc.models import build_model
from asc.models.crnn import pool_mask
from asc.models.pooling import weight_spread
from asc.pipeline import FeaturePipeline
from asc.segments import aggregate_segments, stitch_attention
from asc.segments import stitch_segments as stitch_segments  # re-exported: part of this module's interface


def build_network(cfg: DictConfig, n_classes: int) -> nn.Module:
    """The (untrained) network a config describes."""
    f = cfg.features
    sample_rate = int(cfg.data.sample_rate)
    segment = segment_samples(cfg.data, sample_rate)
    frames = configured_frames(f, sample_rate, segment) if segment else None
    return build_model(cfg.model, n_classes, f.n_bins, frames)


class Predictor(nn.Module):
    """Front-end (-> per-segment mean removal, ``features.subtract_clip_mean``) -> band
    standardiser -> network, for whole clips of any length.

    Parameters
    ----------
    cfg : dict or DictConfig
        The resolved experiment config stored in the checkpoint.
    class_names : list of str
    fold : int, optional
        The fold the network was trained on (None: unknown).
    pipeline, network : optional
        A fitted :class:`~asc.pipeline.FeaturePipeline` and a network to share
        (:meth:`of`); None: built from ``cfg`` (statistics unfitted, weights untrained).
    """

    def __init__(self, cfg, class_names: list[str], fold: int | None = None,
                 pipeline: FeaturePipeline | None = None, network: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
        self.class_names, self.fold = list(class_names), fold
        self.sample_rate = int(self.cfg.data.sample_rate)
        self.segment = segment_samples(self.cfg.data, self.sample_rate)  # None: whole clips
        self.pipeline = pipeline or FeaturePipeline(self.cfg, len(self.class_names))
        self.model = network or build_network(self.cfg, len(self.class_names))

    @classmethod
    def of(cls, module, pipeline: FeaturePipeline) -> Predictor:
        """A Predictor sharing the network of a live :class:`~asc.module.SceneClassifier`
        and the fitted pipeline of its DataModule (for pictures during training)."""
        predictor = cls(module.cfg, module.class_names, module.hparams.get("fold"), pipeline, module.eval_model)
        predictor.training = module.training
        return predictor

    @property
    def frontend(self):
        """The log-spectrogram front-end (``hop`` in samples, band frequencies)."""
        return self.pipeline.frontend

    @property
    def norm(self):
        """The fitted band standardiser."""
        return self.pipeline.norm

    @property
    def hparams(self) -> dict:
        """What the training module stores as hyper-parameters (``fold`` read by notebooks)."""
        return {"cfg": self.cfg, "class_names": self.class_names, "fold": self.fold}

    @property
    def device(self) -> torch.device:
        return self.norm.mean.device

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Standardised log spectrogram (B, F, T) of waveforms (B, N), in float32."""
        return self.pipeline.features(wave)

    def forward(self, spec: torch.Tensor, valid: torch.Tensor | None = None):
        return self.model(spec, valid)

    @torch.no_grad()
    def analyse_clip(self, wave: np.ndarray | torch.Tensor, hop_seconds: float | None = None,
                     max_segments_per_batch: int = 64, with_spec: bool = True) -> dict:
        """Run one clip through the network segment by segment.

        Returns a dict of numpy arrays: ``probs`` (C,) clip probabilities,
        ``segment_probs`` (S, C), ``starts`` (S,) in samples, ``spec`` (F, T) the
        standardised spectrogram of the whole clip (when ``with_spec``; with
        ``features.subtract_clip_mean`` the whole clip's mean is removed, where the network
        sees each segment's), and where the model has attention
        ``temporal`` (T,) and ``mask`` (T, D) stitched over the clip (overlapping segments
        averaged with a taper, :func:`~asc.segments.stitch_segments`), ``spatial`` (D,)
        averaged over segments, ``uniform``, the level of uniform temporal attention
        (1 / frames of one segment), and ``spread_time`` / ``spread_features``, the mean over
        segments of each segment's attention spread (1 = uniform; ``asc attention``).
        """
        was_training = self.training
        self.eval()
        wave = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        hop_s = hop_seconds or self.cfg.data.eval_hop_seconds or (self.cfg.data.segment_seconds or 0) / 2
        starts = segment_starts(len(wave), self.segment, max(1, int(round(hop_s * self.sample_rate))))
        logits, attention = self._segments(wave, starts, max_segments_per_batch)
        out = {
            "segment_probs": torch.softmax(logits, -1).numpy(),
            "probs": aggregate_segments(logits, torch.zeros(len(logits), dtype=torch.long), 1,
                                        self.cfg.eval.aggregate)[0].numpy(),
            "starts": starts,
        }
        if with_spec:
            out["spec"] = self.features(wave[None].to(self.device))[0].float().cpu().numpy()
        if attention["temporal"]:
            out.update(stitch_attention(attention, n_frames(len(wave), self.frontend.hop, self.frontend.frame_win)))
        self.train(was_training)
        return out

    def _segments(self, wave: torch.Tensor, starts: np.ndarray, batch: int) -> tuple[torch.Tensor, dict]:
        """Segment logits (S, C) of the clip ``wave`` cut at ``starts`` (``batch`` segments
        per forward pass) and, where the model has attention, each segment's attention:
        ``temporal`` and ``mask`` as ``(first_frame, values)`` pieces on the clip's
        spectrogram frames, ``spatial`` (one tensor per batch)."""
        size = len(wave) if self.segment is None else min(len(wave), self.segment)
        # a clip shorter than a segment goes in whole, unless the network is built for the
        # segment's frames: then padded to it and masked, as in testing
        padded_to = self.segment if needs_fixed_frames(self.cfg.model) and size < self.segment else size
        frame_hop = self.frontend.hop
        logits_all = []
        attention = {k: [] for k in ("temporal", "mask", "spatial", "spread_time", "spread_features")}
        for b in range(0, len(starts), batch):
            chunk = starts[b:b + batch]
            segs = torch.stack([wave[s:s + size] for s in chunk]).to(self.device)
            lengths = None
            if padded_to > size:
                segs = torch.nn.functional.pad(segs, (0, padded_to - size))
                lengths = torch.full((len(chunk),), size, device=self.device)
            spec = self.pipeline.features(segs, lengths)
            valid = self.pipeline.valid_frames(lengths, spec.shape[-1])
            logits, attn = self(spec, valid)
            logits_all.append(logits.float().cpu())
            if not attn:
                continue
            a, m = attn["temporal"].float().cpu(), attn["mask"].float().cpu()
            reduction = math.ceil(n_frames(padded_to, frame_hop, self.frontend.frame_win) / a.shape[1])
            # a padded segment's pieces end at its own frames (and "uniform" is 1 / those frames)
            keep = n_frames(size, frame_hop, self.frontend.frame_win) if padded_to > size else None
            for k, s in enumerate(chunk):
                first = int(s) // frame_hop
                # each attention frame covers `reduction` spectrogram frames; a_t is spread evenly
                attention["temporal"].append((first, (a[k].repeat_interleave(reduction) / reduction)[:keep]))
                attention["mask"].append((first, (m[k].repeat_interleave(reduction, 0) / reduction)[:keep]))
            spatial = attn["spatial"].float().cpu()
            attention["spatial"].append(spatial)
            # each segment's own spread over its valid frames, before stitching blurs it
            frames = None if valid is None else pool_mask(valid, self.cfg.model.time_pool).cpu()
            attention["spread_time"].append(weight_spread(a, frames))
            attention["spread_features"].append(weight_spread(spatial))
        return torch.cat(logits_all), attention


def load(checkpoint: str | Path, device: str = "auto") -> Predictor:
    """The :class:`Predictor` stored in ``checkpoint`` (a path, or the W&B run id of a fold
    under runs/), on ``device`` (auto: a CUDA GPU if there is one), in eval mode."""
    from asc.checkpoints import DATAMODULE_KEY, migrate
    from asc.config import Config, to_dict

    path = resolve_checkpoint(checkpoint)
    not_torch = checkpoint_file_problem(path)
    if not_torch:
        raise AscError(f"{display_name(path)!r} is not a loadable weights-only PyTorch checkpoint: {not_torch}; "
                       "use a .ckpt written by "
                       "`asc train` or `asc cv` (<output_dir>/<experiment>/fold-<k>/checkpoints/best.ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - many formats of failure, one message
        if "Weights only load failed" in str(e) or "weights_only" in str(e):
            raise AscError(f"{display_name(path)!r} holds Python objects beyond tensors and plain containers; asc "
                           "loads checkpoints weights-only and will not unpickle them (it was not written by asc, "
                           "or by an incompatible version)") from None
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise AscError(f"{display_name(path)!r} is not a loadable weights-only PyTorch checkpoint ({first})") from None
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if "cfg" not in hp or "class_names" not in hp or "state_dict" not in ckpt:
        raise AscError(f"{display_name(path)!r} is not an asc checkpoint (no config, class names or weights); "
                       "use a checkpoint written by `asc train` or `asc cv`")
    hp = migrate(ckpt)["hyper_parameters"]  # older checkpoints upgraded to this version's schema
    try:
        cfg = to_dict(OmegaConf.merge(OmegaConf.structured(Config), hp["cfg"]))
    except Exception as e:  # noqa: BLE001
        raise AscError(f"the config stored in {display_name(path)!r} does not fit this version of asc ({e})") from None
    model = Predictor(cfg, hp["class_names"], hp.get("fold"))
    stats = ckpt.get(DATAMODULE_KEY, {}).get("band_stats")
    try:
        if stats is None:
            raise RuntimeError(f"no band statistics:\n  {DATAMODULE_KEY!r} holds no 'band_stats'")
        model.model.load_state_dict(network_weights(ckpt["state_dict"], cfg), strict=True)
        model.pipeline.load_stats_state(stats)
    except RuntimeError as e:
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise AscError(f"{display_name(path)!r} does not match the model its config describes ({detail} ...); "
                       "was it written by another version of asc, or edited?") from None
    return model.to(inference_device(device)).eval()


def inference_device(device: str) -> torch.device:
    """``--device``: ``auto`` (a CUDA GPU when there is one, else the CPU), ``cpu``, ``cuda``
    or ``cuda:<index>``, checked to exist here."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(device)
    except RuntimeError:
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda"):
        raise AscError(f"--device {device!r} is not a device asc runs on: use auto, cpu, cuda or cuda:<index>")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise AscError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise AscError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                       f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return chosen


def network_weights(state_dict: dict, cfg: dict) -> dict:
    """The weights of the network a checkpoint's ``state_dict`` serves for inference: its
    weight average (``ema.*``, with ``optim.ema_epochs``), which is what validation chose
    the checkpoint by, or else the trained network (``model.*``)."""
    extra = sorted(k for k in state_dict if not k.startswith(("model.", "ema.module.")))
    if extra:
        raise RuntimeError(f"state_dict:\n  unexpected keys {extra[:3]}")
    prefix = "ema.module." if cfg["optim"].get("ema_epochs") else "model."
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
