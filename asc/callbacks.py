"""What a fold's Trainer is given besides the model: Lightning callbacks and the CSV logger.

- :class:`ResumableCSVLogger`: ``fold-<k>/metrics.csv``, appended to by a resumed fold;
- :class:`WandbSteps`: the W&B step count of a fold, kept across a resume;
- :class:`EpochLines`: one printed line per epoch (``logger.progress=epoch``);
- :class:`AttentionPictures`: attention pictures of fixed clips, saved and logged to W&B;
- :class:`AtomicCheckpointIO`: the checkpoint plugin, writing each checkpoint atomically.

W&B itself is set up in :mod:`asc.tracking`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from asc.io import atomic_path, write_text_atomic
from asc.tracking import log_images


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; this one keeps it, drops the
    rows of epochs after ``keep_through_epoch`` (logged after the checkpoint a resumed
    fold starts from, and done again), and appends."""

    def __init__(self, log_dir: str, keep_through_epoch: int | None):
        self.keep_through_epoch = keep_through_epoch
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        import csv

        path = Path(self.metrics_file_path)
        if self.keep_through_epoch is None or not path.is_file():
            if path.is_file():
                path.unlink()  # a fold that starts over starts a new file
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys, rows = list(reader.fieldnames or []), list(reader)
        rows = [r for r in rows if not r.get("epoch") or float(r["epoch"]) <= self.keep_through_epoch]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(keys)


class ResumableCSVLogger(CSVLogger):
    """``fold-<k>/metrics.csv`` that a resumed fold appends to (see :class:`_AppendingWriter`)."""

    def __init__(self, save_dir: str, resumed_from_epoch: int | None):
        super().__init__(save_dir=save_dir, name="", version="")
        self._keep_through_epoch = resumed_from_epoch

    @property
    def experiment(self):
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(self.log_dir, self._keep_through_epoch)
        return self._experiment


class WandbSteps(Callback):
    """Keeps the W&B step count of a fold's run in ``fold-<k>/wandb_step`` (at every epoch
    start and end, at the end of fit and test, and on an interruption), so that a resumed fold, which continues the
    same run id in a new offline folder, goes on counting instead of starting ``_step`` at
    0 again (syncing both folders then adds to the history instead of overwriting it)."""

    def __init__(self, logger: WandbLogger, step_file: Path):
        self.logger, self.step_file = logger, Path(step_file)

    def continue_run(self) -> None:
        """Call before training: move the run's step past what the earlier part logged."""
        if self.step_file.is_file():
            try:
                step = int(self.step_file.read_text().strip())
            except ValueError:
                return
            run = self.logger.experiment
            if step > run.step:  # online, W&B's resume already continues the count
                run.log({}, step=step, commit=False)

    def record(self, trainer, *_) -> None:
        if not trainer.is_global_zero:
            return
        try:
            write_text_atomic(self.step_file, str(self.logger.experiment.step))
        except Exception:  # noqa: BLE001 - e.g. W&B's service already gone on Ctrl-C: keep the last count
            pass

    # the start of an epoch follows every log of the one before; a fold killed mid-epoch
    # resumes from that epoch's start and logs it again under the same steps
    on_train_epoch_start = on_train_epoch_end = on_fit_end = on_test_end = on_exception = record


class EpochLines(Callback):
    """One line per epoch (``logger.progress=epoch``, and ``auto`` when stdout is not a
    terminal): readable in log files and SLURM output, where a progress bar is a mess."""

    KEYS = (("train/loss_epoch", "train/loss", "{:.4f}"), ("val/loss", "val/loss", "{:.4f}"),
            ("val/acc", "val/acc", "{:.2%}"), ("val/macro_f1", "val/macro_f1", "{:.2%}"))

    def __init__(self, fold: int):
        self.fold, self.started = fold, None

    def on_train_epoch_start(self, trainer, module) -> None:
        import time

        self.started = time.time()

    def on_train_epoch_end(self, trainer, module) -> None:
        import time

        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        parts = [f"{label} {fmt.format(float(metrics[key]))}" for key, label, fmt in self.KEYS if key in metrics]
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        took = f"{time.time() - self.started:.1f} s" if self.started else ""
        print(f"fold {self.fold} epoch {trainer.current_epoch + 1}/{total}: {'  '.join(parts)}  ({took})", flush=True)


def progress_mode(cfg) -> str:
    """``bar``, ``epoch`` or ``none``: ``logger.progress``, with ``auto`` = a bar on a
    terminal and one line per epoch otherwise."""
    import sys

    mode = cfg.logger.progress
    if mode == "auto":
        return "bar" if sys.stdout.isatty() else "epoch"
    return mode


class AttentionPictures(Callback):
    """Attention pictures of a fixed set of clips, saved as PNG under ``out_dir`` and
    logged to W&B: of validation clips (``val_clip_ids``) every ``every_n_epochs``
    validation epochs (0: never), as ``val/attention``, and of test clips (``clip_ids``)
    at test time, as ``test/attention``.  Rank 0 only."""

    def __init__(self, clips, clip_ids: list[int], out_dir: Path, every_n_epochs: int = 0,
                 val_clip_ids: list[int] | None = None, fold: int | None = None):
        self.clips, self.clip_ids, self.out_dir, self.every = clips, clip_ids, Path(out_dir), every_n_epochs
        self.fold = fold
        # pictures during training (val/attention) show validation clips, never test clips
        self.val_clip_ids = list(val_clip_ids or [])

    def render(self, trainer, module, tag: str) -> None:
        clip_ids = self.clip_ids if tag == "test" else self.val_clip_ids
        if not trainer.is_global_zero or not clip_ids:
            return
        from asc.inference import Predictor
        from asc.picture_writer import PictureWriter, picture_workers
        from asc.viz import band_frequencies, picture_name

        self.out_dir.mkdir(parents=True, exist_ok=True)
        pngs, captions, rows = [], [], []
        # the live module's network with the DataModule's fitted front-end and statistics
        # (or a loaded Predictor as it is)
        predictor = module if isinstance(module, Predictor) else Predictor.of(module, trainer.datamodule.pipeline)
        hop_s = predictor.frontend.hop / predictor.sample_rate
        # drawn by background processes while the next clips are analysed
        with PictureWriter(picture_workers(len(clip_ids))) as pictures:
            for i in clip_ids:
                analysis = predictor.analyse_clip(self.clips.audio.get(i))
                true = self.clips.class_names[self.clips.labels[i]]
                pred = self.clips.class_names[int(analysis["probs"].argmax())]
                caption = f"{self.clips.items[i]}: true {true}, predicted {pred} ({tag})"
                events = self.clips.events[i] if self.clips.events else None
                pngs.append(self.out_dir / picture_name(self.clips.items[i], true, f"{tag}-"))
                pictures.draw(pngs[-1], analysis, hop_s, caption, events, self.clips.class_names,
                              band_frequencies(predictor.frontend))
                captions.append(caption)
                rows.append((i, true, pred, float(analysis["probs"].max()), analysis, events))
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):
                log_images(lg, "test/attention" if tag == "test" else "val/attention", pngs, captions)
                if tag == "test":
                    lg.experiment.log({"test/attention_table": self.table(rows, pngs, hop_s)})

    def table(self, rows, pngs: list[Path], hop_s: float):
        """A W&B Table, one row per picked test clip: fold, clip, true and predicted class,
        probability, the attention picture, the audio (at most 30 s) and, where events are
        known, the attention score (mass in class events / their coverage; 1.0 = chance)."""
        import wandb

        from asc.attention_score import attention_in_events

        table = wandb.Table(columns=["fold", "clip", "true", "predicted", "probability", "attention", "audio",
                                     "event_score"])
        rate = self.clips.audio.sample_rate
        for (i, true, pred, prob, analysis, events), png in zip(rows, pngs):
            score = None
            if events and "temporal" in analysis:
                score = attention_in_events(analysis["temporal"], hop_s,
                                            [(e["onset"], e["offset"]) for e in events if e["kind"] == "class"])
            audio = self.clips.audio.get(i, 0, 30 * rate)
            table.add_data(self.fold, str(self.clips.items[i]), true, pred, prob, wandb.Image(str(png)),
                           wandb.Audio(audio, sample_rate=rate), score)
        return table

    def on_validation_epoch_end(self, trainer, module) -> None:
        if self.every and not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every == 0:
            self.render(trainer, module, f"epoch{trainer.current_epoch + 1:03d}")

    def on_test_end(self, trainer, module) -> None:
        try:
            self.render(trainer, module, "test")
        except Exception as e:  # noqa: BLE001 - pictures must not cost the fold its test results
            warnings.warn(f"the test's attention pictures failed ({type(e).__name__}: {e}); the fold's results are "
                          "kept", stacklevel=1)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed into place: a run killed while
    saving keeps the previous checkpoint intact instead of a truncated one."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
