"""The LightningModule: the network, the BC (soft-target) loss and the metrics.

Batches arrive as spectrograms: :class:`asc.data.datamodule.SceneDataModule` runs the
feature pipeline (BC mix, front-end, band standardiser, frame mask, augmentation) on the
training device in its ``on_after_batch_transfer`` and adds ``spec``, ``valid`` (the frame
mask of the padding, None without padding) and, while fitting, ``target`` (soft targets).
A checkpoint holds the network (``state_dict``: ``model.*``, and with ``optim.ema_epochs`` its
weight average ``ema.module.*``, which evaluation and inference use), the config and class names
(``hyper_parameters``) and the band statistics (the DataModule's state), so a checkpoint
alone is enough to classify new audio (:func:`asc.inference.load`).
"""

from __future__ import annotations

import copy
import math

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from asc.augment import soft_target_kl
from asc.checkpoints import migrate as migrate_checkpoint
from asc.checkpoints import stamp as stamp_checkpoint
from asc.compilation import Compiled, begin_step, fixed_rows_call
from asc.inference import build_network
from asc.models.crnn import pool_mask
from asc.models.pooling import weight_spread
from asc.registry import MODELS
from asc.segments import aggregate_segments


def selection_score(acc: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """``val/select``: accuracy, ties broken by the lower loss, as acc - 1e-6 * loss in
    float64.  (In float32 one step near acc 0.8 is 6e-8, so loss differences below about
    0.06 vanished and the checkpoint callback, which needs a strictly greater value, kept
    the earlier of two tied epochs.)  One clip of accuracy in 50 000 outweighs any loss the
    module logs (a clip's loss is at most -log(1e-8) = 18.4)."""
    return acc.detach().double() - 1e-6 * loss.detach().double()


class WeightAverage(torch.nn.Module):
    """Exponential moving average of a network's weights and float buffers (BatchNorm
    statistics), kept beside the trained network (``optim.ema_epochs``).

    Parameters
    ----------
    network : nn.Module
        The trained network; the average starts as a copy of it.
    epochs : float
        Time constant of the average in epochs: the weight of a step decays by 1/e over
        ``epochs`` epochs of optimizer steps, whatever the size of the data set.
    """

    def __init__(self, network: torch.nn.Module, epochs: float):
        super().__init__()
        self.module = copy.deepcopy(network)
        self.module.requires_grad_(False)
        self.epochs = float(epochs)

    def decay(self, step: int, steps_per_epoch: float) -> float:
        """Decay after optimizer step ``step`` (0-based): exp(-1 / steps of the time
        constant), lower for the first steps ((1 + step) / (10 + step)) so that the
        average does not hold on to the untrained initialisation."""
        return min(math.exp(-1.0 / (self.epochs * max(1.0, steps_per_epoch))), (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, network: torch.nn.Module, decay: float) -> None:
        averaged = [*self.module.parameters(), *self.module.buffers()]
        current = [*network.parameters(), *network.buffers()]
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        torch._foreach_lerp_([a for a, _ in floats], [c.detach() for _, c in floats], 1.0 - decay)
        for a, c in zip(averaged, current):
            if not a.is_floating_point():  # BatchNorm's batch counter
                a.copy_(c)


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
        self.sample_rate = int(self.cfg.data.sample_rate)
        self.model = build_network(self.cfg, len(class_names))
        self.compiled = Compiled(self.cfg.model.get("compile"))  # training steps (asc.compilation)
        # evaluation windows, in fixed-size forward passes (model.compile_eval)
        self.compiled_eval = Compiled(self.cfg.model.get("compile") if self.cfg.model.get("compile_eval") else None)
        # the weight average is what validation, test, checkpoint selection and inference see
        ema_epochs = self.cfg.optim.get("ema_epochs")
        self.ema = WeightAverage(self.model, ema_epochs) if ema_epochs else None
        self._averaged_steps = 0  # optimizer steps folded into the average (by this process)
        n = len(class_names)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_metrics", MetricCollection({
                "acc": MulticlassAccuracy(n, average="micro"),
                "macro_f1": MulticlassF1Score(n, average="macro"),
            }, prefix=f"{stage}/"))
        self.test_confusion = MulticlassConfusionMatrix(n)
        self.val_loss_mean = MeanMetric()
        # how far attention is from a plain mean, per validation window (asc.models.pooling.weight_spread);
        # a property of the model, not of a rank's batches, so that every DDP rank reduces it
        self.val_spread = torch.nn.ModuleDict({"time": MeanMetric(), "features": MeanMetric()})
        self.logs_spread = bool(MODELS.meta(self.cfg.model.name).get("pooled"))
        self.test_rows: list[tuple[int, int, np.ndarray]] = []  # (clip id, true label, probabilities)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        stamp_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        migrate_checkpoint(checkpoint)  # resuming a run written by an older version: same layout as now
        if self._trainer is not None:
            # resuming: the stored optimizer state takes this run's fusion (load_state_dict
            # would otherwise copy the stored groups' setting over the new optimizer's)
            fused = self._fused_optimizer(self.trainer.strategy.root_device)
            for state in checkpoint.get("optimizer_states", []):
                for group in state.get("param_groups", []):
                    group["fused"] = fused

    def on_train_start(self) -> None:
        self._averaged_steps = self.trainer.global_step  # a resumed run's average holds its steps so far

    def on_fit_start(self) -> None:
        # the DataModule's band statistics, fitted here on every rank at once (after a resumed
        # run restored them: then nothing to do), before the sanity check's first batch
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "ready"):
            datamodule.ready(self.device)

    # ---------------------------------------------------------------- steps
    @property
    def eval_model(self) -> torch.nn.Module:
        """The network evaluated and saved for inference: the weight average where there is one."""
        return self.model if self.ema is None else self.ema.module

    def forward(self, spec: torch.Tensor, valid: torch.Tensor | None = None):
        return self.model(spec, valid)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        step = self.trainer.global_step  # optimizer steps so far (a host int: no device sync)
        if self.ema is None or step <= self._averaged_steps:  # no step taken (gradient accumulation)
            return
        steps_per_epoch = self.trainer.num_training_batches / self.trainer.accumulate_grad_batches
        self.ema.update(self.model, self.ema.decay(step - 1, steps_per_epoch))
        self._averaged_steps = step

    def training_step(self, batch, batch_idx):
        logits, attn = self.compiled(self.model)(batch["spec"], batch["valid"])
        loss = soft_target_kl(logits, batch["target"])
        if "max_logits" in attn:
            loss = loss + self.cfg.model.max_aux_weight * soft_target_kl(attn["max_logits"], batch["target"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(logits),
                 sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # once an epoch, not every step: logging a Python float copies it to the device and
        # waits for the device
        self.log("train/lr", float(self.optimizers().param_groups[0]["lr"]), sync_dist=True)

    def _eval_step(self, batch, stage: str):
        logits = self._eval_logits(batch["spec"], batch["valid"], track_spread=stage == "val")
        probs = aggregate_segments(logits, batch["clip"], len(batch["label"]), self.cfg.eval.aggregate)
        loss = F.nll_loss(torch.log(probs.clamp_min(1e-8)), batch["label"])
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(probs, batch["label"])
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(probs), sync_dist=True)
        self.log_dict(metrics, prog_bar=stage == "val", batch_size=len(probs))
        return probs, loss

    def _eval_logits(self, spec: torch.Tensor, valid: torch.Tensor | None, track_spread: bool = False) -> torch.Tensor:
        """Logits of a batch's evaluation windows, at most 4 x data.batch_size windows per
        forward pass: a batch of 32 clips of 30 s is 448 windows of 4 s, whose activations
        took 2.1 GB at once on a CPU (0.7 GB in chunks of 128; the outputs are the same, every
        layer treats windows independently in eval mode)."""
        chunk = 4 * int(self.cfg.data.batch_size)
        logits = []
        spread = track_spread and self.logs_spread
        keep = ("temporal", "spatial") if spread else ()  # the attention entries the spread reads
        for i in range(0, len(spec), chunk):
            part = None if valid is None else valid[i:i + chunk]
            out, attn = self._eval_forward(spec[i:i + chunk], part, chunk, keep)
            logits.append(out)
            if spread:
                self._update_spread(attn, part)
        return logits[0] if len(logits) == 1 else torch.cat(logits)

    def _eval_forward(self, spec: torch.Tensor, valid: torch.Tensor | None, rows: int, keep: tuple[str, ...]):
        """The evaluated network on one forward pass of windows: (logits, attention entries,
        ``keep`` at least); under ``model.compile_eval`` its compiled wrapper on ``rows`` rows
        (asc.compilation.fixed_rows_call)."""
        if not self.compiled_eval.mode:
            return self.eval_model(spec, valid)
        begin_step(self.compiled_eval.mode)
        return fixed_rows_call(self.compiled_eval(self.eval_model), spec, valid, rows, keep)

    def _update_spread(self, attn: dict, valid: torch.Tensor | None) -> None:
        frames = pool_mask(valid, self.cfg.model.time_pool)  # the recurrent output's frames
        self.val_spread["time"].update(weight_spread(attn["temporal"], frames))
        self.val_spread["features"].update(weight_spread(attn["spatial"]))

    def validation_step(self, batch, batch_idx):
        probs, loss = self._eval_step(batch, "val")
        self.val_loss_mean.update(loss, len(probs))

    def on_validation_epoch_end(self) -> None:
        # Checkpoint selection: val/acc, ties broken by the lower val/loss.  The loss term is
        # below 1e-6 * 18.5 (the loss of a clip is at most -log(1e-8)), less than one clip of
        # accuracy for any validation set under 50 000 clips, so it only breaks ties.
        acc = self.val_metrics["acc"].compute()
        loss = self.val_loss_mean.compute()
        self.val_loss_mean.reset()
        self.log("val/select", selection_score(acc, loss))
        for name, spread in self.val_spread.items() if self.logs_spread else ():
            self.log(f"val/attention_spread_{name}", spread.compute())
            spread.reset()

    def test_step(self, batch, batch_idx):
        probs, _ = self._eval_step(batch, "test")
        self.test_confusion.update(probs, batch["label"])
        for i, y, p in zip(batch["index"].tolist(), batch["label"].tolist(), probs.float().cpu().numpy()):
            self.test_rows.append((i, y, p))

    def on_test_epoch_start(self) -> None:
        self.test_rows = []

    def on_test_epoch_end(self) -> None:
        cm = self.test_confusion.compute()  # synced across processes
        self.test_confusion_matrix = cm.cpu().numpy()
        self.test_confusion.reset()
        if self.trainer.world_size > 1:  # every rank scored a disjoint share of the clips
            shares = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(shares, self.test_rows)
            self.test_rows = [row for share in shares for row in share]
        self.test_rows.sort(key=lambda row: row[0])

    # ---------------------------------------------------------------- optimisation
    def _fused_optimizer(self, device: torch.device) -> bool | None:
        """AdamW's ``fused``: on CUDA one kernel for the whole update instead of a few per
        parameter group (a step is bound by kernel launches there: +11 % clips/s on an
        H200, docs/benchmarks.md), except under float16 AMP, whose gradient clipping
        Lightning refuses with a fused optimizer; None (PyTorch's choice) elsewhere."""
        precision = str(self.trainer.precision) if self._trainer is not None else ""
        return True if device.type == "cuda" and precision != "16-mixed" else None

    def configure_optimizers(self):
        o = self.cfg.optim
        opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay,
                                fused=self._fused_optimizer(self.device))
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
