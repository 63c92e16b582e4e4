"""Weights & Biases set-up and what is logged to it: a fold's logger, the end of a fold
(confusion matrix, per-class accuracy) and the aggregate run of an experiment.  Offline
unless the user is logged in or asks for online.  The Lightning callbacks that log during
training are in :mod:`asc.callbacks`.

Every W&B call here is meant for rank 0: callers check ``trainer.is_global_zero``.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

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


def where_runs_go(cfg, exp_dir: Path) -> str | None:
    """One line saying where this experiment's W&B runs go (None when logging is off)."""
    mode = resolve_mode(cfg.logger.mode)
    if mode == "disabled":
        return None
    if mode == "online":
        return f"W&B: online, project {'/'.join(filter(None, [cfg.logger.entity, cfg.logger.project]))}"
    why = "" if cfg.logger.mode == "offline" or os.environ.get("WANDB_MODE") else " (not logged in)"
    runs = exp_dir / "wandb"
    return f"W&B: offline{why}, runs in {runs}; upload later with `wandb sync {runs}/offline-run-*`"


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


def log_images(logger, key: str, images: list, captions: list[str]) -> None:
    """Log matplotlib figures or image files as W&B images (rank 0, logger not None)."""
    import wandb

    if logger is None:
        return
    logger.experiment.log({key: [wandb.Image(image if not isinstance(image, Path) else str(image), caption=c)
                                 for image, c in zip(images, captions)]})


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
