"""Weights & Biases set-up.  Offline unless the user is logged in or asks for online.

Every W&B call here is meant for rank 0: callers check ``trainer.is_global_zero``.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from asc.errors import AscError
from asc.registry import MIXERS, MODELS, POOLINGS


def logged_in() -> bool:
    """True when an API key is available (WANDB_API_KEY or a netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].split("/")[0]
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str) -> str:
    """``auto`` -> ``online`` when logged in, else ``offline``.  WANDB_MODE wins if set."""
    env = os.environ.get("WANDB_MODE")
    if env in ("offline", "online", "disabled", "dryrun"):
        return "offline" if env == "dryrun" else env
    if mode == "auto":
        return "online" if logged_in() else "offline"
    return mode


def stored_run_id(id_file: Path) -> str:
    """The W&B run id kept in ``id_file``, made (8 lowercase letters and digits) and
    written atomically the first time, so a re-run or resume continues the same run."""
    import secrets
    import string

    from asc.io import write_text_atomic

    if not id_file.exists():
        alphabet = string.ascii_lowercase + string.digits
        write_text_atomic(id_file, "".join(secrets.choice(alphabet) for _ in range(8)))
    return id_file.read_text().strip()




def run_tags(cfg) -> list[str]:
    """W&B tags of a run: the configured tags without those naming another model or mixing
    than the run's own (a sweep over demo.yaml inherits its ``stap``/``bc`` tags), and for
    a sweep run ``sweep:<name>``, ``model:<variant>`` and ``mix:<mix>`` from the resolved
    config."""
    variant = cfg.model.pooling if MODELS.meta(cfg.model.name).get("pooled") else cfg.model.name
    own = {cfg.model.name, variant, cfg.augment.mix}
    named = {*MODELS.keys(), *POOLINGS.keys(), *MIXERS.keys()}  # tags that name a model, pooling or mix
    tags = [str(t) for t in cfg.experiment.tags if not (t in named and t not in own)]
    if cfg.experiment.sweep:
        tags += [f"sweep:{cfg.experiment.sweep}", f"model:{variant}", f"mix:{cfg.augment.mix}"]
    return list(dict.fromkeys(tags))


SWEEP_ENV = ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH")


def hold_sweep_env() -> dict:
    """Under ``wandb agent`` the process is meant to be *one* run of the sweep.  Take the
    agent's variables out of the environment while the fold runs log (so they do not
    join the sweep) and hand them back for the aggregate run, which carries the sweep
    metric ``mean/test/acc``."""
    return {k: os.environ.pop(k) for k in SWEEP_ENV if k in os.environ}


class FoldWandbLogger(WandbLogger):
    """Lightning's WandbLogger, minus two annoyances: it passes ``anonymous=None`` to
    wandb.init, which W&B answers with "The anonymous setting has no effect" on every run;
    and it logs the module's hyperparameters (the whole config again, under ``cfg``) into
    a W&B config that already holds the resolved config from wandb.init."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

    def log_hyperparams(self, params) -> None:  # noqa: D102 - the config went to wandb.init
        return None


def wandb_logger(cfg, exp_dir: Path, name: str, job_type: str, run_id: str, config: dict):
    """A Lightning WandbLogger for one fold (or None when logging is disabled)."""
    mode = resolve_mode(cfg.logger.mode)
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")  # keep stdout ours; metrics still logged
    log_model = bool(cfg.logger.log_model) and mode == "online"
    return FoldWandbLogger(project=cfg.logger.project, entity=cfg.logger.entity, name=name, group=cfg.experiment.name,
                       job_type=job_type, tags=run_tags(cfg), save_dir=str(exp_dir), id=run_id,
                       mode=mode, config=config, log_model=log_model, resume="allow")


def log_images(logger, key: str, figures: list, captions: list[str]) -> None:
    """Log matplotlib figures as W&B images (rank 0, logger not None)."""
    import wandb

    if logger is None:
        return
    logger.experiment.log({key: [wandb.Image(f, caption=c) for f, c in zip(figures, captions)]})


def aggregate_run(cfg, exp_dir: Path, results: dict, sweep_env: dict | None = None) -> None:
    """One W&B run per experiment with the per-fold table and mean ± std in its summary,
    so a dashboard shows one line per experiment (under a sweep agent: the sweep's run).
    Its id is kept in ``exp_dir/aggregate_wandb_run_id``: re-running a finished or resumed
    experiment updates that run instead of adding a second line."""
    mode = resolve_mode(cfg.logger.mode)
    if mode == "disabled":
        return
    import wandb

    os.environ.update(sweep_env or {})
    # under an agent the sweep names the run (passed explicitly: W&B read the environment
    # when the fold runs started, without the agent's variables); otherwise a re-run
    # updates the same one
    settings = {}
    if sweep_env and sweep_env.get("WANDB_RUN_ID"):
        run_id, resume = sweep_env["WANDB_RUN_ID"], None
        settings = {k: sweep_env[v] for k, v in (("sweep_id", "WANDB_SWEEP_ID"),
                                                  ("sweep_param_path", "WANDB_SWEEP_PARAM_PATH")) if v in sweep_env}
    else:
        run_id, resume = stored_run_id(exp_dir / "aggregate_wandb_run_id"), "allow"
    try:
        run = wandb.init(project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.experiment.name,
                         job_type="aggregate", name=f"{cfg.experiment.name}/aggregate", dir=str(exp_dir),
                         tags=run_tags(cfg), mode=mode, config=results.get("config", {}),
                         id=run_id, resume=resume, reinit="finish_previous", settings=wandb.Settings(**settings))
    except Exception as e:  # noqa: BLE001 - a tracking failure must not lose the results
        raise AscError(f"could not start the W&B aggregate run ({e}); results are safe in {exp_dir}") from None
    folds = results["folds"]
    keys = sorted({k for row in folds for k in row if isinstance(row[k], (int, float))})
    table = wandb.Table(columns=keys, data=[[row.get(k) for k in keys] for row in folds])
    run.log({"folds": table})
    for k, v in results["mean"].items():
        run.summary[f"mean/{k}"] = v
    for k, v in results["std"].items():
        run.summary[f"std/{k}"] = v
    run.summary["n_folds"] = len(folds)
    log_cross_fold(run, results)
    run.finish()


def log_cross_fold(run, results: dict) -> None:
    """The confusion matrix summed over folds, as a picture and as W&B's interactive
    confusion matrix, and per-class accuracy mean/std in the summary."""
    if "confusion_matrix_sum" not in results:
        return
    import numpy as np
    import wandb

    from asc.viz import confusion_figure

    cm, names = np.array(results["confusion_matrix_sum"]), results["class_names"]
    fig = confusion_figure(cm, names, f"summed over {len(results['folds'])} folds: "
                           f"acc {100 * np.trace(cm) / max(cm.sum(), 1):.1f} %")
    true, pred = np.nonzero(cm)
    counts = cm[true, pred]
    run.log({"test/confusion_matrix_sum": wandb.Image(fig),
             "test/confusion_matrix": wandb.plot.confusion_matrix(
                 y_true=np.repeat(true, counts).tolist(), preds=np.repeat(pred, counts).tolist(), class_names=names)})
    for stat in ("mean", "std"):
        for name, value in results["per_class_acc"][stat].items():
            run.summary[f"{stat}/test/acc/{name}"] = value


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
        from asc.io import write_text_atomic

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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed into place: a run killed while
    saving keeps the previous checkpoint intact instead of a truncated one."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


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
        from asc.viz import attention_figure, band_frequencies, picture_name, save

        self.out_dir.mkdir(parents=True, exist_ok=True)
        # the live module's network with the DataModule's fitted front-end and statistics
        # (or a loaded Predictor as it is)
        predictor = module if isinstance(module, Predictor) else Predictor.of(module, trainer.datamodule.pipeline)
        hop_s = predictor.frontend.hop / predictor.sample_rate
        figs, captions, rows = [], [], []
        for i in clip_ids:
            analysis = predictor.analyse_clip(self.clips.audio.get(i))
            true = self.clips.class_names[self.clips.labels[i]]
            pred = self.clips.class_names[int(analysis["probs"].argmax())]
            caption = f"{self.clips.items[i]}: true {true}, predicted {pred} ({tag})"
            events = self.clips.events[i] if self.clips.events else None
            figs.append(attention_figure(analysis, hop_s, caption, events, self.clips.class_names,
                                         band_frequencies(predictor.frontend)))
            captions.append(caption)
            rows.append((i, true, pred, float(analysis["probs"].max()), analysis, events))
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):
                log_images(lg, "test/attention" if tag == "test" else "val/attention", figs, captions)
                if tag == "test":
                    lg.experiment.log({"test/attention_table": self.table(rows, figs, hop_s)})
        for i, fig in zip(clip_ids, figs):
            true = self.clips.class_names[self.clips.labels[i]]
            save(fig, self.out_dir / picture_name(self.clips.items[i], true, f"{tag}-"))

    def table(self, rows, figs, hop_s: float):
        """A W&B Table, one row per picked test clip: fold, clip, true and predicted class,
        probability, the attention picture, the audio (at most 30 s) and, where events are
        known, the attention score (mass in class events / their coverage; 1.0 = chance)."""
        import wandb

        from asc.attention import attention_in_events

        table = wandb.Table(columns=["fold", "clip", "true", "predicted", "probability", "attention", "audio",
                                     "event_score"])
        rate = self.clips.audio.sample_rate
        for (i, true, pred, prob, analysis, events), fig in zip(rows, figs):
            score = None
            if events and "temporal" in analysis:
                score = attention_in_events(analysis["temporal"], hop_s,
                                            [(e["onset"], e["offset"]) for e in events if e["kind"] == "class"])
            audio = self.clips.audio.get(i, 0, 30 * rate)
            table.add_data(self.fold, str(self.clips.items[i]), true, pred, prob, wandb.Image(fig),
                           wandb.Audio(audio, sample_rate=rate), score)
        return table

    def on_validation_epoch_end(self, trainer, module) -> None:
        if self.every and not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every == 0:
            self.render(trainer, module, f"epoch{trainer.current_epoch + 1:03d}")

    def on_test_end(self, trainer, module) -> None:
        self.render(trainer, module, "test")


def finish_fold_logging(logger, module, row: dict, class_names: list[str], fold_dir: Path) -> None:
    """Confusion matrix picture and per-class accuracy of a finished fold; close its run."""
    import numpy as np

    from asc.viz import confusion_figure, save

    fig = confusion_figure(np.array(row["confusion_matrix"]), class_names,
                           f"fold {row['fold']}: acc {100 * row['test/acc']:.1f} %")
    if logger is not None:
        log_images(logger, "test/confusion_matrix", [fig], [f"fold {row['fold']}"])
        summary = logger.experiment.summary
        for name, acc in row["per_class_acc"].items():
            summary[f"test/acc/{name}"] = acc
        for k in ("test/acc", "test/macro_f1", "n_train", "n_val", "n_test"):
            summary[k] = row[k]
        logger.experiment.finish()
    save(fig, fold_dir / "confusion.png")
