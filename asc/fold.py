"""One fold: its Trainer, training (resumed from ``last.ckpt``), the validation and test of
the checkpoint ``cv.checkpoint`` names (the last, or the one chosen on validation), and its
result row and files.

:func:`run_fold` is the whole fold, as the sequential loop of :func:`asc.experiment.run_cv`
and a parallel fold's child process (:mod:`asc.parallel`) both run it; the other functions
are its steps.  A fold writes ``fold-<k>/``: ``checkpoints/last.ckpt`` (every epoch) and
``best.ckpt``, ``metrics.csv``, ``test_predictions.csv``, the W&B run id and step count,
attention pictures, and ``result.json`` last (its presence marks the fold finished).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from asc.config import to_dict
from asc.data.base import ClipSet, attention_clip_ids
from asc.io import write_json_atomic
from asc.results import earlier_checkpoints, untested_result, write_test_predictions

METRICS = ("test/acc", "test/macro_f1")
VAL_METRICS = ("val/acc", "val/macro_f1", "val/loss")  # of the tested checkpoint


def tested_checkpoint_rule(cfg: DictConfig) -> str:
    """``cv.checkpoint`` resolved: ``auto`` is ``last``, or ``best`` under early stopping
    (which stops ``patience`` epochs past the best)."""
    if cfg.cv.checkpoint == "auto":
        return "best" if cfg.early_stopping.monitor is not None else "last"
    return cfg.cv.checkpoint


def fold_checkpoints(cfg: DictConfig, best_ckpt, last: Path) -> tuple[str | None, str, str]:
    """After training: the validation choice (None without a validation split), the
    checkpoint the test scores and the rule that named it (``last`` when there is no
    choice)."""
    best = best_ckpt.best_model_path if best_ckpt and best_ckpt.best_model_path else None
    rule = tested_checkpoint_rule(cfg) if best else "last"
    return best, (best if rule == "best" else str(last)), rule


def checkpoint_fields(best: str | None, tested: str, rule: str) -> dict:
    """What results.json records of a fold's checkpoints: the validation choice ``best``
    (None without a validation split) whichever is tested, and the ``tested`` one under
    ``rule``; 1-based epochs."""
    def epoch(path: str | None) -> int | None:
        e = None if path is None else checkpoint_epoch(Path(path))
        return None if e is None else 1 + e

    return {"best_epoch": epoch(best), "tested_epoch": epoch(tested), "checkpoint": rule,
            "best_checkpoint": str(Path(best or tested).resolve()), "tested_checkpoint": str(Path(tested).resolve())}


def checkpoint_epoch(path: Path) -> int | None:
    """Epoch stored in a checkpoint, or None when there is none or it cannot be read
    (then the fold starts over instead of failing)."""
    if not path.exists():
        return None
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception as e:  # noqa: BLE001 - a damaged checkpoint must not stop the experiment
        print(f"warning: cannot read {path} ({type(e).__name__}); this fold starts over")
        path.replace(path.with_suffix(".ckpt.unreadable"))
        return None


def training_extras(cfg: DictConfig, fold: int, trainer_kwargs: dict) -> tuple[list, dict]:
    """Callbacks and Trainer arguments from the config beyond the basics: early stopping on
    a validation metric (``early_stopping.*``), the progress display (``logger.progress``)
    and evaluation under no_grad for ``model.compile_eval``."""
    from asc.callbacks import EpochLines, progress_mode

    callbacks = []
    es = cfg.early_stopping
    if es.monitor is not None:
        from lightning.pytorch.callbacks import EarlyStopping

        mode = es.mode if es.mode != "auto" else ("min" if es.monitor.endswith("loss") else "max")
        callbacks.append(EarlyStopping(monitor=es.monitor, mode=mode, patience=es.patience, min_delta=es.min_delta,
                                       check_finite=True, verbose=False))
    progress = progress_mode(cfg)
    if progress != "bar" and "enable_progress_bar" not in cfg.trainer:
        trainer_kwargs = {**trainer_kwargs, "enable_progress_bar": False}
    if progress == "epoch":
        callbacks.append(EpochLines(fold))
    if cfg.model.get("compile_eval"):
        # no_grad, not inference mode: graphs compiled under inference mode can break the
        # same network's compiled training graphs (pytorch/pytorch#135892)
        trainer_kwargs = {**trainer_kwargs, "inference_mode": False}
    return callbacks, trainer_kwargs


@contextlib.contextmanager
def interruptible(trainer):
    """Lightning answers Ctrl-C by cleaning up and calling ``sys.exit(1)``: turn that back
    into a KeyboardInterrupt, so that the command line says how to resume (exit 130)."""
    try:
        yield
    except SystemExit as e:
        if type(e) is SystemExit and trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def fold_loggers(cfg: DictConfig, dm, fold: int, exp_dir: Path, run_id: str | None, resumed_from: int | None,
                 complexity: dict | None) -> tuple[list, object]:
    """The fold's loggers and its W&B logger (None when W&B is off): ``fold-<k>/metrics.csv``
    (appended to from ``resumed_from``) and the W&B run ``run_id`` (the stored one continues),
    configured with the config, the fold's sizes and the network's ``complexity``."""
    from asc.callbacks import ResumableCSVLogger
    from asc.tracking import wandb_logger

    loggers = [ResumableCSVLogger(str(exp_dir / f"fold-{fold}"), resumed_from)]
    wb = wandb_logger(cfg, exp_dir, f"{cfg.experiment.name}/fold-{fold}", f"fold-{fold}", run_id,
                      {**to_dict(cfg), "fold": fold, **dm.sizes,
                       "complexity": complexity or {}})
    if wb is not None:
        loggers.append(wb)
    return loggers, wb


def fold_trainer(cfg: DictConfig, clips: ClipSet, dm, fold: int, fold_dir: Path, loggers: list, wb,
                 resumed_from: int | None, extra_callbacks: tuple = ()) -> tuple:
    """The fold's Trainer (checkpoints written atomically) and its best-checkpoint callback
    (None without a validation split).  Callbacks: the two checkpoints, attention pictures,
    early stopping and progress (:func:`training_extras`), the W&B step count, and
    ``extra_callbacks`` (a caller's own, e.g. the benchmark's timer)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from asc.callbacks import AtomicCheckpointIO, AttentionPictures, WandbSteps

    ckpt_dir = str(fold_dir / "checkpoints")
    # last.ckpt every epoch, for resuming; best.ckpt by val/acc with ties broken by val/loss
    # (val/select), for testing (last without a val split)
    last_ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                                every_n_epochs=1, enable_version_counter=False)
    best_ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/select", mode="max", save_top_k=1,
                                enable_version_counter=False) if len(dm.val_idx) > 0 else None
    per_class = cfg.logger.attention_clips_per_class
    pictures = AttentionPictures(clips, attention_clip_ids(clips, dm.test_idx, per_class), fold_dir / "attention",
                                 cfg.logger.attention_every_n_epochs, attention_clip_ids(clips, dm.val_idx, per_class),
                                 fold)
    # the DataModule shards its own loaders across DDP ranks (seeded crops, every test clip once)
    # Lightning's model summary (a table per fold) gives way to one line per experiment (FoldCollector.describe_model)
    trainer_kwargs = {"log_every_n_steps": 5, "enable_model_summary": False, **to_dict(cfg)["trainer"],
                      "use_distributed_sampler": False}
    # best before last: both save at the end of each epoch in this order (Lightning keeps checkpoint callbacks'
    # order), so last.ckpt stores this epoch's validation choice; the other way round a resumed fold would
    # restore the choice of the epoch before and could replace best.ckpt by a worse epoch
    callbacks = [pictures] + ([best_ckpt] if best_ckpt else []) + [last_ckpt]
    extra, trainer_kwargs = training_extras(cfg, fold, trainer_kwargs)
    callbacks += [*extra, *extra_callbacks]
    if wb is not None:
        steps = WandbSteps(wb, fold_dir / "wandb_step")
        callbacks.append(steps)
        if resumed_from is not None:
            steps.continue_run()
    trainer = L.Trainer(logger=loggers, callbacks=callbacks, default_root_dir=str(fold_dir),
                        plugins=[AtomicCheckpointIO()], **trainer_kwargs)
    return trainer, best_ckpt


def fit(trainer, module, dm, last: Path, resumed_from: int | None) -> None:
    """Train the fold, from ``last`` (its epoch ``resumed_from``) when resuming; Ctrl-C
    comes back as a KeyboardInterrupt."""
    with interruptible(trainer):
        trainer.fit(module, dm, ckpt_path=str(last) if resumed_from is not None else None, weights_only=True)


def evaluate_checkpoint(trainer, module, dm, best: str, test: bool) -> tuple[dict, dict]:
    """The validation metrics (with a validation split) and the test metrics (``test``) of
    the checkpoint ``best`` (the one the fold tests): (val_metrics, test_metrics), each {}
    when not run."""
    val_metrics, metrics = {}, {}
    with interruptible(trainer):
        if len(dm.val_idx) > 0:  # the validation metrics of the tested checkpoint, for results.json only: not
            loggers, trainer.loggers = trainer.loggers, []  # logged again as one more epoch
            val_metrics = trainer.validate(module, dm, ckpt_path=best, verbose=False, weights_only=True)[0]
            trainer.loggers = loggers
        if test:
            metrics = trainer.test(module, dm, ckpt_path=best, verbose=False, weights_only=True)[0]
    return val_metrics, metrics


def finish_fold(cfg: DictConfig, clips: ClipSet, fold_dir: Path, module, wb, row: dict) -> None:
    """The fold's files and the end of its W&B run: after a test, ``test_predictions.csv``,
    per-class accuracy and the confusion matrix (added to ``row``) and the fold's last W&B
    logs; then ``result.json``."""
    from asc.tracking import finish_fold_logging

    if cfg.cv.test:
        write_test_predictions(fold_dir / "test_predictions.csv", module.test_rows, clips)
        cm = module.test_confusion_matrix
        row["per_class_acc"] = dict(zip(clips.class_names, (np.diag(cm) / np.maximum(cm.sum(1), 1)).tolist()))
        row["confusion_matrix"] = cm.astype(int).tolist()
        finish_fold_logging(wb, module, row, clips.class_names, fold_dir)
    elif wb is not None:
        wb.experiment.finish()
    write_json_atomic(fold_dir / "result.json", row)


def run_fold(cfg: DictConfig, clips: ClipSet, fold: int, exp_dir: Path, complexity: dict | None = None,
             callbacks: tuple = ()) -> dict | None:
    """Train, keep the checkpoint chosen on validation (val/acc, ties broken by val/loss)
    and the last, and test the one ``cv.checkpoint`` names, on one fold.  ``complexity``
    (the network's size and compute, counted once by
    :func:`~asc.experiment.run_cv`) goes into the fold's W&B config; ``callbacks`` are added
    to the fold's Trainer.  Returns the fold's result row (None on ranks other than 0)."""
    import lightning as L
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from asc.data.datamodule import SceneDataModule
    from asc.module import SceneClassifier
    from asc.tracking import stored_run_id

    fold_dir = exp_dir / f"fold-{fold}"
    run_id = None
    if rank_zero_only.rank == 0:  # other DDP ranks log nothing to W&B
        fold_dir.mkdir(parents=True, exist_ok=True)
        run_id = stored_run_id(fold_dir / "wandb_run_id")  # stored before training: a resumed fold continues it

    L.seed_everything(cfg.seed + fold, workers=True, verbose=False)
    dm = SceneDataModule(clips, fold, cfg)
    module = SceneClassifier(to_dict(cfg), clips.class_names, fold)
    last = fold_dir / "checkpoints" / "last.ckpt"
    resumed_from = checkpoint_epoch(last)
    earlier = untested_result(cfg, fold_dir)
    # metrics.csv and the W&B run continue from the checkpoint's epoch, or after all epochs of an untested fold
    continued = resumed_from if earlier is None else int(earlier.get("epochs") or 0)
    loggers, wb = fold_loggers(cfg, dm, fold, exp_dir, run_id, continued, complexity)
    trainer, best_ckpt = fold_trainer(cfg, clips, dm, fold, fold_dir, loggers, wb, continued, callbacks)
    if resumed_from is not None and earlier is None:
        # the checkpoint's epoch counts from 0, the progress lines from 1
        print(f"fold {fold}: resuming from {last} ({resumed_from + 1} of {cfg.trainer.max_epochs} epochs done), "
              f"W&B run {run_id}")
    started = time.time()
    best, tested, rule, training = train(cfg, trainer, module, dm, best_ckpt, last, resumed_from, earlier)
    val_metrics, metrics = evaluate_checkpoint(trainer, module, dm, tested, cfg.cv.test)
    if not trainer.is_global_zero:
        return None
    row = {"fold": fold, **{k: float(metrics[k]) for k in METRICS if k in metrics},
           **{k: float(val_metrics[k]) for k in VAL_METRICS if k in val_metrics}, **dm.sizes, **training,
           **checkpoint_fields(best, tested, rule),
           "seconds": round(time.time() - started + (earlier or {}).get("seconds", 0.0), 1), "wandb_run_id": run_id}
    finish_fold(cfg, clips, fold_dir, module, wb, row)
    return row


def train(cfg: DictConfig, trainer, module, dm, best_ckpt, last: Path, resumed_from: int | None,
          earlier: dict | None) -> tuple[str | None, str, str, dict]:
    """Train the fold (resumed from ``last`` at epoch ``resumed_from``), or, for a fold the
    ``earlier`` run trained with cv.test=false, nothing more: :func:`fold_checkpoints` (or
    :func:`earlier_checkpoints`) and the row's epochs and resumption."""
    if earlier is not None:  # test the checkpoint that run chose
        best, tested, rule = earlier_checkpoints(earlier, last.parent.parent)
        return best, tested, rule, {k: earlier.get(k) for k in ("epochs", "resumed_from_epoch")}
    fit(trainer, module, dm, last, resumed_from)
    best, tested, rule = fold_checkpoints(cfg, best_ckpt, last)
    return best, tested, rule, {"epochs": int(trainer.current_epoch), "resumed_from_epoch": resumed_from}
