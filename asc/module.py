"""The LightningModule: front-end, BC mixing, network, loss and metrics.

Batches arrive as waveforms.  ``on_after_batch_transfer`` runs on the training device:
BC mix (training only), log spectrogram in float32, per-band standardisation.  The
front-end and its statistics are part of the module, so a checkpoint alone is enough to
classify new audio.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from asc.augment import bc_mix_spectrogram, mix_batch, soft_target_kl
from asc.data.datamodule import segment_starts
from asc.features import BandStandardizer, LogSpectrogram, frame_params, n_frames
from asc.models import build_model


def aggregate_segments(logits: torch.Tensor, clip: torch.Tensor, n_clips: int, how: str = "mean_prob") -> torch.Tensor:
    """Clip probabilities (n_clips, C) from segment logits (S, C) and their clip ids (S,).

    ``mean_prob``: mean of segment probabilities; ``mean_logprob``: softmax of the mean
    log-probability; ``vote``: share of segments voting for each class.
    """
    logits = logits.float()
    counts = torch.zeros(n_clips, device=logits.device).index_add_(0, clip, torch.ones_like(clip, dtype=torch.float))
    if how == "mean_prob":
        per_seg = torch.softmax(logits, -1)
    elif how == "mean_logprob":
        per_seg = torch.log_softmax(logits, -1)
    elif how == "vote":
        per_seg = F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    else:
        raise ValueError(f"unknown aggregation {how!r}")
    summed = torch.zeros(n_clips, logits.shape[-1], device=logits.device).index_add_(0, clip, per_seg)
    mean = summed / counts[:, None]
    return torch.softmax(mean, -1) if how == "mean_logprob" else mean


class SceneClassifier(L.LightningModule):
    """Acoustic scene classifier over waveform batches.

    Parameters
    ----------
    cfg : dict
        The resolved experiment config (``asc.config.Config`` as a dict).  Stored in the
        checkpoint together with ``class_names``.
    class_names : list of str
    """

    def __init__(self, cfg: dict, class_names: list[str], fold: int | None = None):
        super().__init__()
        self.save_hyperparameters({"cfg": cfg, "class_names": list(class_names), "fold": fold})
        self.cfg = OmegaConf.create(cfg)
        self.class_names = list(class_names)
        d, f = self.cfg.data, self.cfg.features
        self.sample_rate = int(d.sample_rate)
        self.segment = int(round(d.segment_seconds * self.sample_rate))
        _, hop = frame_params(self.sample_rate, f.win_ms, f.hop_ms)
        self.frontend = LogSpectrogram(f.name, self.sample_rate, f.n_bins, f.win_ms, f.hop_ms, f.fmin, f.fmax,
                                       f.log_eps)
        self.norm = BandStandardizer(f.n_bins)
        self.model = build_model(self.cfg.model, len(class_names), f.n_bins, n_frames(self.segment, hop))
        n = len(class_names)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_metrics", MetricCollection({
                "acc": MulticlassAccuracy(n, average="micro"),
                "macro_f1": MulticlassF1Score(n, average="macro"),
            }, prefix=f"{stage}/"))
        self.test_confusion = MulticlassConfusionMatrix(n)

    # ---------------------------------------------------------------- features
    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Standardised log spectrogram (B, F, T) of waveforms (B, N), in float32."""
        return self.norm(self.frontend(wave))

    @torch.no_grad()
    def fit_normalizer(self, loader) -> None:
        """Per-band mean/std from the training clips (never the test split)."""
        for batch in loader:
            self.norm.update(self.frontend(batch["wave"].to(self.device)))
        self.norm.finalize()

    def on_fit_start(self) -> None:
        if not bool(self.norm.fitted):  # a resumed run restored them from its checkpoint
            self.fit_normalizer(self.trainer.datamodule.stats_dataloader())

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        # mixing only while fitting: not in the sanity check, validation or test
        return self.prepare_batch(batch, training=self.trainer.training)

    def prepare_batch(self, batch: dict, training: bool) -> dict:
        """On the batch's device: BC mix (training only), features; adds ``spec`` (and
        ``target``, the soft targets, when training)."""
        wave = batch["wave"]
        if training:
            a = self.cfg.augment
            wave, targets, partners, r = mix_batch(wave, batch["label"], len(self.class_names), a.mix,
                                                   self.sample_rate, a.gain, a.mixup_alpha)
            spec = self.features(wave)
            if a.mix == "bc_spec":
                spec = bc_mix_spectrogram(spec, spec[partners], r)
            batch["target"] = targets
        else:
            spec = self.features(wave)
        batch["spec"] = spec
        return batch

    # ---------------------------------------------------------------- steps
    def forward(self, spec: torch.Tensor):
        return self.model(spec)

    def training_step(self, batch, batch_idx):
        logits, _ = self(batch["spec"])
        loss = soft_target_kl(logits, batch["target"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(logits),
                 sync_dist=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def _eval_step(self, batch, stage: str):
        logits, _ = self(batch["spec"])
        probs = aggregate_segments(logits, batch["clip"], len(batch["label"]), self.cfg.eval.aggregate)
        loss = F.nll_loss(torch.log(probs.clamp_min(1e-8)), batch["label"])
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(probs, batch["label"])
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(probs), sync_dist=True)
        self.log_dict(metrics, prog_bar=stage == "val", batch_size=len(probs))
        return probs

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        probs = self._eval_step(batch, "test")
        self.test_confusion.update(probs, batch["label"])

    def on_test_epoch_end(self) -> None:
        cm = self.test_confusion.compute()  # synced across processes
        self.test_confusion_matrix = cm.cpu().numpy()
        self.test_confusion.reset()

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        o = self.cfg.optim
        opt = torch.optim.AdamW(self.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        if o.scheduler == "none":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total // 2, o.warmup_epochs * max(1, total // max(1, self.trainer.max_epochs or 1)))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---------------------------------------------------------------- whole-clip analysis
    @torch.no_grad()
    def analyse_clip(self, wave: np.ndarray | torch.Tensor, hop_seconds: float | None = None,
                     max_segments_per_batch: int = 64, with_spec: bool = True) -> dict:
        """Run one clip through the network segment by segment.

        Returns a dict of numpy arrays: ``probs`` (C,) clip probabilities,
        ``segment_probs`` (S, C), ``starts`` (S,) in samples, ``spec`` (F, T) the
        standardised spectrogram of the whole clip (when ``with_spec``), and where the model has attention
        ``temporal`` (T,) and ``mask`` (T, D) stitched over the clip (overlapping segments
        averaged with a taper, :func:`asc.attention.stitch_segments`), ``spatial`` (D,)
        averaged over segments, and ``uniform``, the level of uniform temporal attention
        (1 / frames of one segment).
        """
        was_training = self.training
        self.eval()
        wave = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        if len(wave) < self.segment:
            wave = F.pad(wave, (0, self.segment - len(wave)))
        hop = int(round((hop_seconds or self.cfg.data.eval_hop_seconds or self.cfg.data.segment_seconds / 2)
                        * self.sample_rate))
        starts = segment_starts(len(wave), self.segment, hop)
        frame_hop = self.frontend.hop
        n_clip_frames = n_frames(len(wave), frame_hop)
        logits_all, temporal, mask, spatial = [], [], [], []
        for b in range(0, len(starts), max_segments_per_batch):
            chunk = starts[b:b + max_segments_per_batch]
            segs = torch.stack([wave[s:s + self.segment] for s in chunk]).to(self.device)
            logits, attn = self(self.features(segs))
            logits_all.append(logits.float().cpu())
            if not attn:
                continue
            a, m = attn["temporal"].float().cpu(), attn["mask"].float().cpu()
            reduction = math.ceil(n_frames(self.segment, frame_hop) / a.shape[1])
            for k, s in enumerate(chunk):
                first = int(s) // frame_hop
                # each attention frame covers `reduction` spectrogram frames; a_t is spread evenly
                temporal.append((first, a[k].repeat_interleave(reduction) / reduction))
                mask.append((first, m[k].repeat_interleave(reduction, 0) / reduction))
            spatial.append(attn["spatial"].float().cpu())
        logits = torch.cat(logits_all)
        out = {
            "segment_probs": torch.softmax(logits, -1).numpy(),
            "probs": aggregate_segments(logits, torch.zeros(len(logits), dtype=torch.long), 1,
                                        self.cfg.eval.aggregate)[0].numpy(),
            "starts": starts,
        }
        if with_spec:
            out["spec"] = self.features(wave[None].to(self.device))[0].float().cpu().numpy()
        if temporal:
            from asc.attention import stitch_segments

            out["temporal"] = stitch_segments(temporal, n_clip_frames).numpy()
            out["mask"] = stitch_segments(mask, n_clip_frames).numpy()
            out["spatial"] = torch.cat(spatial).mean(0).numpy()
            out["uniform"] = 1.0 / len(temporal[0][1])  # a_t of uniform attention, per frame of one segment
        self.train(was_training)
        return out
