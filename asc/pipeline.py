"""The feature pipeline: waveform batch -> gain and BC mix -> log spectrogram and frame
mask -> (each row's band means removed, ``features.subtract_clip_mean``) -> band
standardiser -> spectrogram augmentation.

:class:`FeaturePipeline` is owned by :class:`asc.data.datamodule.SceneDataModule`, which
applies it in ``on_after_batch_transfer`` on the training device; the LightningModule only
sees spectrograms, frame masks and (while fitting) soft targets.  Its filterbank is rebuilt
from the config; its band statistics are the only state, fitted once per fold on the
training clips (averaged over DDP ranks) and stored in every checkpoint through the
DataModule's ``state_dict``.  :class:`asc.inference.Predictor` uses the same front-end and
statistics (:meth:`FeaturePipeline.features`), without mixing or augmentation.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from omegaconf import OmegaConf
from torch import nn

from asc.augment import mix_batch, mix_spectrogram
from asc.compilation import Compiled, begin_step
from asc.features import BandStandardizer, LogSpectrogram, frame_mask, padding_mask, subtract_clip_mean
from asc.registry import AUGMENTATIONS, MIXERS, call_with


class FeaturePipeline(nn.Module):
    """Waveform batches to standardised log spectrograms (B, F, T), with the training-only
    mixing and augmentation stages.

    Parameters
    ----------
    cfg : DictConfig
        The experiment config (``data.sample_rate``, ``features``, ``augment``).
    n_classes : int
        Classes of the soft targets the mixer makes.
    """

    def __init__(self, cfg, n_classes: int):
        super().__init__()
        self.sample_rate = int(cfg.data.sample_rate)
        self.augment, self.n_classes = cfg.augment, int(n_classes)
        self.augment_options = dict(OmegaConf.to_container(cfg.augment, resolve=True))  # stage keyword arguments
        self.frontend = LogSpectrogram.from_config(cfg.features, self.sample_rate)
        self.norm = BandStandardizer(int(cfg.features.n_bins))
        self.clip_mean = bool(cfg.features.get("subtract_clip_mean", False))
        # the front-end of training batches (asc.compilation)
        self.compiled = Compiled(OmegaConf.select(cfg, "model.compile"))

    @property
    def hop(self) -> int:
        """Frame hop in samples."""
        return self.frontend.hop

    @property
    def fitted(self) -> bool:
        return bool(self.norm.fitted)

    def features(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised log spectrogram (B, F, T) of waveforms (B, N) with ``lengths`` valid
        samples (None: all), in float32."""
        return self.norm(self.log_spectrogram(wave, lengths)[0])

    def log_spectrogram(self, wave: torch.Tensor, lengths: torch.Tensor | None = None,
                        padded: bool = True, training: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log spectrogram (B, F, T) and its frame mask (B, T) (None when no row is padded;
        ``padded=False``: the caller knows so, and no mask is built).  With
        ``features.subtract_clip_mean`` each row's band means over its valid frames are
        subtracted (a row: a training crop, an evaluation segment, or the whole clip when
        ``data.segment_seconds`` is null).  What the band statistics are fitted on.
        ``training``: a training batch, through the compiled front-end under ``model.compile``."""
        spec = (self.compiled(self.frontend) if training else self.frontend)(wave)
        valid = self.valid_frames(lengths, spec.shape[-1]) if padded else None
        return (subtract_clip_mean(spec, valid) if self.clip_mean else spec), valid

    def valid_frames(self, lengths: torch.Tensor | None, n_total: int) -> torch.Tensor | None:
        """Frame mask (B, T) of rows with ``lengths`` valid samples; None when no row is padded."""
        return padding_mask(lengths, self.hop, n_total, self.frontend.frame_win)

    @torch.no_grad()
    def fit(self, batches: Iterable[dict], device: torch.device,
            reduce: Callable[[torch.Tensor], None] | None = None) -> None:
        """Band mean/std from evaluation-style batches of training clips (``wave``,
        ``length``), padding excluded.  ``reduce`` sums across processes (DDP: each rank
        passes its share of the clips)."""
        for batch in batches:
            self.norm.update(*self.log_spectrogram(batch["wave"].to(device), batch["length"].to(device)))
        self.norm.finalize(reduce)

    def prepare(self, batch: dict, training: bool) -> dict:
        """On the batch's device: gain and BC mix (training only), features, frame mask,
        spectrogram augmentation (training only); adds ``spec``, ``valid`` (the frame
        mask, None without padding) and, when training, ``target`` (the soft targets)."""
        wave = batch["wave"]
        lengths = batch.get("length")
        if lengths is None:
            lengths = torch.full((len(wave),), wave.shape[-1], device=wave.device)
        a = self.augment
        if training:
            # here, not in the LightningModule: this runs before training_step, and the
            # front-end's graph is the step's first replay
            begin_step(self.compiled.mode)
            wave = self.augmented("wave", wave, None, lengths)
            wave, targets, partners, r = mix_batch(wave, batch["label"], self.n_classes, a.mix,
                                                   self.sample_rate, a.gain, a.mixup_alpha)
            own_lengths = lengths  # a spectrogram mix takes each partner's statistics over its own frames
            if partners is not None:  # a mix holds sound wherever either partner does
                lengths = torch.maximum(lengths, lengths[partners])
            batch["target"] = targets
        # the loader's `padded` (decided on the host) spares a device sync per batch when no
        # row is padded; a mix only lengthens rows, so it cannot add padding
        spec, valid = self.log_spectrogram(wave, lengths, padded=batch.get("padded", True), training=training)
        spec = self.norm(spec)
        if training:
            if MIXERS.meta(a.mix).get("spectrogram") and valid is not None:
                own = frame_mask(own_lengths, self.hop, spec.shape[-1], self.frontend.frame_win)
            else:
                own = None
            spec = mix_spectrogram(a.mix, spec, partners, r, own)
            spec = self.augmented("spec", spec, valid, lengths)
        batch["spec"], batch["valid"] = spec, valid
        return batch

    def augmented(self, domain: str, x: torch.Tensor, valid, lengths) -> torch.Tensor:
        """``x`` through the enabled augmentation stages of ``domain`` (``wave`` or ``spec``),
        in registration order (:data:`asc.registry.AUGMENTATIONS`)."""
        for name in AUGMENTATIONS:
            meta = AUGMENTATIONS.meta(name)
            if meta.get("domain") == domain and meta.get("enabled", lambda a: True)(self.augment):
                x = call_with(AUGMENTATIONS.get(name), **{domain: x}, valid=valid, lengths=lengths,
                              sample_rate=self.sample_rate, hop=self.hop, **self.augment_options)
        return x

    def stats_state(self) -> dict:
        """The band statistics (the pipeline's only state), as stored in checkpoints."""
        return {k: v.detach().cpu() for k, v in self.norm.state_dict().items()}

    def load_stats_state(self, state: dict) -> None:
        self.norm.load_state_dict(state, strict=True)
