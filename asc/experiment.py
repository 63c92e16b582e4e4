"""One fold, all folds, resume, results.json.

Cross-validation is not built into Lightning: every fold gets a fresh Trainer, model,
DataModule and W&B run (grouped by experiment).  Each finished fold writes
``fold-<k>/result.json``; a re-run skips finished folds and resumes an interrupted one
from ``fold-<k>/checkpoints/last.ckpt`` under the same W&B run id.  ``results.json`` is
rewritten atomically after every fold.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from asc.config import to_dict, to_yaml
from asc.data import load_clipset
from asc.data.base import ClipSet, attention_clip_ids
from asc.errors import AscError
from asc.io import write_json_atomic, write_text_atomic

METRICS = ("test/acc", "test/macro_f1")
VAL_METRICS = ("val/acc", "val/macro_f1", "val/loss")  # at the chosen checkpoint
# keys that may change between a run and its resumption without changing its results
RESUMABLE_KEYS = ("cv", "logger", "data.num_workers", "data.root", "data.cache_dir", "trainer.devices",
                  "trainer.num_nodes", "trainer.strategy", "trainer.accelerator", "trainer.enable_progress_bar")


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


def experiment_dir(cfg: DictConfig) -> Path:
    return Path(cfg.output_dir) / cfg.experiment.name


def _comparable(cfg_dict: dict) -> dict:
    c = OmegaConf.create(cfg_dict)
    for key in RESUMABLE_KEYS:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(c, parent) if parent else c
        if node is not None and leaf in node:
            node.pop(leaf)
    return OmegaConf.to_container(c)


def has_trained(exp_dir: Path) -> bool:
    """Whether any fold of the experiment has a checkpoint or a result: until then its
    config.yaml protects nothing, and a corrected command may replace it."""
    return any(exp_dir.glob("fold-*/result.json")) or any(exp_dir.glob("fold-*/checkpoints/*.ckpt"))


def conflict_message(cfg: DictConfig, exp_dir: Path) -> str:
    """The error for a folder that holds the same experiment name with another config, with
    advice that works: a sweep run's name is derived from its parameters, so a new
    experiment.name would be replaced again."""
    head = f"{exp_dir} already holds experiment {cfg.experiment.name!r} run with a different config"
    if cfg.experiment.sweep:
        return (f"{head} (sweep {cfg.experiment.sweep!r}: the run's folder is named after its parameters, so the "
                "other settings changed); run the sweep into another folder with output_dir=<new folder> (in the "
                f"sweep file's command for wandb agent), rename the sweep, or delete {exp_dir} to start that run over")
    return f"{head}; pick a new experiment.name=..., or delete that folder to start over"


def prepare_experiment(cfg: DictConfig, is_rank_zero: bool = True) -> Path:
    """Create the experiment folder and write config.yaml; refuse to mix a different
    config into an existing experiment's folds."""
    exp_dir = experiment_dir(cfg)
    cfg_path = exp_dir / "config.yaml"
    if cfg_path.exists() and has_trained(exp_dir):
        old = to_dict(OmegaConf.load(cfg_path))
        if _comparable(old) != _comparable(to_dict(cfg)):
            raise AscError(conflict_message(cfg, exp_dir))
    if is_rank_zero:
        exp_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cfg_path, to_yaml(cfg))
    return exp_dir


def training_extras(cfg: DictConfig, fold: int, trainer_kwargs: dict) -> tuple[list, dict]:
    """Callbacks and Trainer arguments from the config beyond the basics: early stopping on
    a validation metric (``early_stopping.*``) and the progress display (``logger.progress``)."""
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


def run_fold(cfg: DictConfig, clips: ClipSet, fold: int, exp_dir: Path, complexity: dict | None = None) -> dict | None:
    """Train, select the checkpoint on validation (val/acc, ties broken by val/loss) and
    test it on one fold.  ``complexity`` (the network's size and compute, counted once by
    :func:`run_cv`) goes into the fold's W&B config.  Returns the fold's result row (None
    on ranks other than 0)."""
    import lightning as L
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning.pytorch.callbacks import ModelCheckpoint

    from asc.callbacks import AtomicCheckpointIO, AttentionPictures, ResumableCSVLogger, WandbSteps
    from asc.data.datamodule import SceneDataModule
    from asc.module import SceneClassifier
    from asc.tracking import finish_fold_logging, stored_run_id, wandb_logger

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
    loggers = [ResumableCSVLogger(str(fold_dir), resumed_from)]
    wb = wandb_logger(cfg, exp_dir, f"{cfg.experiment.name}/fold-{fold}", f"fold-{fold}", run_id,
                      {**to_dict(cfg), "fold": fold, **dm.sizes,
                       "complexity": complexity or {}})
    if wb is not None:
        loggers.append(wb)
    has_val = len(dm.val_idx) > 0
    ckpt_dir = str(fold_dir / "checkpoints")
    # last.ckpt every epoch, for resuming; best.ckpt by val/acc with ties broken by val/loss
    # (val/select), for testing (last without a val split)
    last_ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                                every_n_epochs=1, enable_version_counter=False)
    best_ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/select", mode="max", save_top_k=1,
                                enable_version_counter=False) if has_val else None
    per_class = cfg.logger.attention_clips_per_class
    pictures = AttentionPictures(clips, attention_clip_ids(clips, dm.test_idx, per_class), fold_dir / "attention",
                                 cfg.logger.attention_every_n_epochs, attention_clip_ids(clips, dm.val_idx, per_class),
                                 fold)
    # the DataModule shards its own loaders across DDP ranks (seeded crops, every test clip once)
    trainer_kwargs = {"log_every_n_steps": 5, "use_distributed_sampler": False, **to_dict(cfg)["trainer"]}
    callbacks = [last_ckpt, pictures] + ([best_ckpt] if best_ckpt else [])
    extra_callbacks, trainer_kwargs = training_extras(cfg, fold, trainer_kwargs)
    callbacks += extra_callbacks
    if wb is not None:
        steps = WandbSteps(wb, fold_dir / "wandb_step")
        callbacks.append(steps)
        if resumed_from is not None:
            steps.continue_run()
    trainer = L.Trainer(logger=loggers, callbacks=callbacks, default_root_dir=str(fold_dir),
                        plugins=[AtomicCheckpointIO()], **trainer_kwargs)
    if resumed_from is not None:
        print(f"fold {fold}: resuming from {last} (epoch {resumed_from}), W&B run {run_id}")
    started = time.time()
    with interruptible(trainer):
        trainer.fit(module, dm, ckpt_path=str(last) if resumed_from is not None else None, weights_only=True)
    best = best_ckpt.best_model_path if best_ckpt and best_ckpt.best_model_path else str(last)
    val_metrics, metrics = {}, {}
    with interruptible(trainer):
        if has_val:  # the validation metrics of the chosen checkpoint, for results.json only: not
            loggers, trainer.loggers = trainer.loggers, []  # logged again as one more epoch
            val_metrics = trainer.validate(module, dm, ckpt_path=best, verbose=False, weights_only=True)[0]
            trainer.loggers = loggers
        if cfg.cv.test:
            metrics = trainer.test(module, dm, ckpt_path=best, verbose=False, weights_only=True)[0]
    if not trainer.is_global_zero:
        return None
    row = {
        "fold": fold,
        **{k: float(metrics[k]) for k in METRICS if k in metrics},
        **{k: float(val_metrics[k]) for k in VAL_METRICS if k in val_metrics},
        **dm.sizes,
        "epochs": int(trainer.current_epoch),
        "best_epoch": None if best_ckpt is None else 1 + checkpoint_epoch(Path(best)),  # 1-based
        "resumed_from_epoch": resumed_from,
        "seconds": round(time.time() - started, 1),
        "best_checkpoint": str(Path(best).resolve()),
        "wandb_run_id": run_id,
    }
    if cfg.cv.test:
        write_test_predictions(fold_dir / "test_predictions.csv", module.test_rows, clips)
        cm = module.test_confusion_matrix
        row["per_class_acc"] = dict(zip(clips.class_names, (np.diag(cm) / np.maximum(cm.sum(1), 1)).tolist()))
        row["confusion_matrix"] = cm.astype(int).tolist()
        finish_fold_logging(wb, module, row, clips.class_names, fold_dir)
    elif wb is not None:
        wb.experiment.finish()
    write_json_atomic(fold_dir / "result.json", row)
    return row


def write_test_predictions(path: Path, rows: list, clips: ClipSet) -> None:
    """One line per test clip: clip, true class, predicted class, class probabilities
    (for paired tests between runs and error analysis)."""
    import csv
    import io

    names = clips.class_names
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["clip", "true", "predicted"] + [f"p_{c}" for c in names])
    for i, y, p in rows:
        out.writerow([clips.items[i], names[y], names[int(np.argmax(p))]] + [f"{v:.5f}" for v in p])
    write_text_atomic(path, buf.getvalue())


def aggregate(rows: list[dict]) -> tuple[dict, dict]:
    keys = [k for k in rows[0] if k.startswith(("test/", "bof/", "val/")) and all(k in r for r in rows)]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    std = {k: float(np.std([r[k] for r in rows])) for k in keys}
    return mean, std


def cross_fold(rows: list[dict], class_names: list[str]) -> dict:
    """The confusion matrix summed over folds (rows: true class, columns: predicted; the
    usual summary over LITIS's 20 splits) and per-class accuracy, mean and std over folds."""
    if not rows or any("confusion_matrix" not in r for r in rows):
        return {}
    total = np.sum([np.array(r["confusion_matrix"]) for r in rows], axis=0)
    per_class = {c: [r["per_class_acc"][c] for r in rows if c in r.get("per_class_acc", {})] for c in class_names}
    return {"confusion_matrix_sum": total.astype(int).tolist(), "class_names": list(class_names),
            "per_class_acc": {"mean": {c: float(np.mean(v)) for c, v in per_class.items() if v},
                              "std": {c: float(np.std(v)) for c, v in per_class.items() if v}}}


def format_table(rows: list[dict], mean: dict, std: dict) -> str:
    cols = [("fold", "fold"), ("n_train", "train"), ("n_val", "val"), ("n_test", "test"),
            ("val/acc", "val acc %"), ("test/acc", "acc %"), ("test/macro_f1", "macro-F1 %")]
    if rows and "bof/acc" in rows[0]:
        cols.append(("bof/acc", "bag-of-frames acc %"))
    cols.append(("seconds", "time s"))
    from asc.tables import RULE
    from asc.tables import format_table as plain_table

    fmt = lambda k, v: "—" if v is None else f"{100 * v:.2f}" if k.startswith(("test/", "bof/", "val/")) else v  # noqa: E731
    summary = [f"{100 * mean[k]:.2f}±{100 * std[k]:.2f}" if k in mean else "" for k, _ in cols]
    summary[0] = "mean±std"
    body = [[fmt(k, r.get(k)) for k, _ in cols] for r in rows] + [RULE, summary]
    return plain_table([h for _, h in cols], body, align="r" * len(cols), widths=[max(len(h), 9) for _, h in cols])


def selected_folds(cfg: DictConfig, clips) -> list[int]:
    """The folds ``cv.folds`` names (default: all of the data set's), checked to exist."""
    available = sorted(clips.folds)
    folds = list(cfg.cv.folds) if cfg.cv.folds is not None else available
    missing = [k for k in folds if k not in clips.folds]
    if missing:
        raise AscError(f"cv.folds={folds}: fold(s) {missing} do not exist in {clips.name}; available: {available}")
    return folds


class FoldCollector:
    """results.json of an experiment, rewritten atomically as each fold's row arrives (in
    ``cv.folds`` order, whatever order they finish in): the one collecting path of the
    sequential loop and of parallel folds, so mean, std, the bag-of-frames baseline and the
    cross-fold confusion are the same either way."""

    def __init__(self, cfg: DictConfig, clips: ClipSet, folds: list[int], exp_dir: Path, record: dict,
                 complexity: dict, bof_feats):
        self.cfg, self.clips, self.folds, self.exp_dir = cfg, clips, folds, exp_dir
        self.record, self.complexity, self.bof_feats = record, complexity, bof_feats
        self.by_fold: dict[int, dict] = {}

    def result_path(self, k: int) -> Path:
        return self.exp_dir / f"fold-{k}" / "result.json"

    def finished(self, k: int) -> dict | None:
        """The row of fold ``k`` when it finished earlier (said so on the terminal), else None."""
        done = self.result_path(k)
        if not done.exists():
            return None
        row = json.loads(done.read_text())
        score = ", ".join(f"{key} {100 * row[key]:.2f} %" for key in ("val/acc", "test/acc") if key in row)
        print(f"fold {k}: already finished ({score}), skipping")
        return row

    def add(self, k: int, row: dict) -> dict:
        """Take fold ``k``'s row (adding the bag-of-frames baseline) and rewrite results.json."""
        if self.bof_feats is not None and self.cfg.cv.test and "bof/acc" not in row:
            from asc.baselines import bag_of_frames_fold

            row["bof/acc"] = bag_of_frames_fold(self.bof_feats, self.clips, k)
            write_json_atomic(self.result_path(k), row)
        self.by_fold[k] = row
        write_json_atomic(self.exp_dir / "results.json", self.results())
        return row

    @property
    def rows(self) -> list[dict]:
        return [self.by_fold[k] for k in self.folds if k in self.by_fold]

    def results(self) -> dict:
        rows = self.rows
        mean, std = aggregate(rows) if rows else ({}, {})
        return {"experiment": self.cfg.experiment.name, "folds": rows, "mean": mean, "std": std,
                "complete": len(rows) == len(self.folds), "config": to_dict(self.cfg),
                **cross_fold(rows, self.clips.class_names), "reproducibility": self.record,
                "complexity": self.complexity}

    def summary(self) -> None:
        results, cfg = self.results(), self.cfg
        print()
        print(f"experiment {cfg.experiment.name}: {self.clips.name}, model {cfg.model.name}"
              f"{'/' + cfg.model.pooling if cfg.model.name == 'crnn' else ''}, mix {cfg.augment.mix}")
        print(format_table(self.rows, results["mean"], results["std"]))
        print(f"results: {self.exp_dir / 'results.json'}")


def run_cv(cfg: DictConfig, only_first: bool = False) -> dict:
    """Run every fold in ``cv.folds`` (default: all), or just the first with
    ``only_first``; write and return results.json's content.  ``cv.parallel_folds`` > 1
    runs the folds that are not finished as that many processes at once
    (:func:`run_folds_parallel`)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from asc.baselines import clip_mean_features
    from asc.parallel import check_parallel
    from asc.tracking import aggregate_run, hold_sweep_env

    parallel = check_parallel(cfg.cv.parallel_folds)
    is_zero = rank_zero_only.rank == 0
    if parallel > 1 and (int(cfg.trainer.get("devices", 1) or 1) != 1 or int(cfg.trainer.get("num_nodes", 1)) != 1):
        raise AscError(f"cv.parallel_folds={parallel} runs each fold as its own process on one device: "
                       "use trainer.devices=1 (or cv.parallel_folds=1 to train each fold on several devices)")
    clips = load_clipset(cfg.data)
    folds = selected_folds(cfg, clips)
    if only_first:
        folds = folds[:1]
    exp_dir = prepare_experiment(cfg, is_zero)
    sweep_env = hold_sweep_env()
    from asc.models.complexity import complexity_from_config
    from asc.repro import reproducibility_record

    record = reproducibility_record(to_dict(cfg), clips) if is_zero else {}
    # parameters and multiply-accumulates per second of audio of the network (and front-end)
    complexity = complexity_from_config(cfg, len(clips.class_names)) if is_zero else {}
    bof_feats = clip_mean_features(clips, cfg.features) if cfg.cv.bag_of_frames and is_zero else None
    collector = FoldCollector(cfg, clips, folds, exp_dir, record, complexity, bof_feats)
    if parallel > 1:
        failed = run_folds_parallel(cfg, collector, parallel)
    else:
        failed = []
        for k in folds:
            row = collector.finished(k)
            if row is None:
                row = run_fold(cfg, clips, k, exp_dir, complexity)
                if row is None:  # not rank 0
                    continue
            collector.add(k, row)
    if not is_zero:
        return {}
    collector.summary()
    if failed:
        logs = "; ".join(f"fold {k}: {exp_dir / f'fold-{k}' / 'log.txt'}" for k in failed)
        raise AscError(f"fold(s) {', '.join(map(str, failed))} failed ({logs}); the other folds' results are in "
                       f"{exp_dir / 'results.json'}; run the same command again to run the failed fold(s)")
    results = collector.results()
    aggregate_run(cfg, exp_dir, results, sweep_env)
    return results


def run_folds_parallel(cfg: DictConfig, collector: FoldCollector, n: int) -> list[int]:
    """The folds of ``collector`` that are not finished, as child processes (asc/parallel.py),
    at most ``n`` at a time; each finished fold's row goes to the collector as it arrives.
    Returns the folds that failed."""
    from asc.parallel import Job, child_env, fold_command, last_error, run_jobs, threads_per_child, uses_cpu

    todo = []
    for k in collector.folds:
        row = collector.finished(k)
        if row is None:
            todo.append(k)
        else:
            collector.add(k, row)
    if not todo:
        return []
    n = min(n, len(todo))
    threads = threads_per_child(n, uses_cpu(cfg))
    env = child_env(threads)
    config_path = collector.exp_dir / "config.yaml"
    jobs = [Job(k, f"fold {k}", fold_command(config_path, k, collector.complexity),
                collector.exp_dir / f"fold-{k}" / "log.txt", env) for k in todo]
    print(f"{len(todo)} fold(s) to run, {n} at a time ({threads} CPU thread(s) each); logs in fold-<k>/log.txt",
          flush=True)
    failed = []
    done = 0

    def started(job):
        print(f"fold {job.key}: started (process {job.proc.pid})", flush=True)

    def finished(job):
        nonlocal done
        done += 1
        progress = f"[{done}/{len(todo)}]"
        result = collector.result_path(job.key)
        if job.returncode == 0 and result.exists():
            row = collector.add(job.key, json.loads(result.read_text()))
            score = ", ".join(f"{key} {100 * row[key]:.2f} %" for key in ("val/acc", "test/acc") if key in row)
            print(f"{progress} fold {job.key}: finished in {job.seconds:.0f} s ({score})", flush=True)
        else:
            failed.append(job.key)
            reason = last_error(job.log) or f"exit status {job.returncode}"
            print(f"{progress} fold {job.key}: FAILED after {job.seconds:.0f} s ({reason}); log: {job.log}",
                  flush=True)

    run_jobs(jobs, n, started, finished)
    return sorted(failed)
