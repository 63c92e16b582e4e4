"""All folds of an experiment: its folder and config.yaml, the folds to run, resume.

Cross-validation is not built into Lightning: every fold gets a fresh Trainer, model,
DataModule and W&B run (grouped by experiment).  Each finished fold writes
``fold-<k>/result.json``; a re-run skips finished folds and resumes an interrupted one
from ``fold-<k>/checkpoints/last.ckpt`` under the same W&B run id.  ``results.json`` is
rewritten atomically after every fold.  One fold is :mod:`asc.fold`; results.json and the
table are :mod:`asc.results`.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from asc.config import Config, to_dict, to_yaml
from asc.data import load_clipset
from asc.errors import AscError
from asc.fold import run_fold
from asc.io import write_text_atomic
from asc.results import FoldCollector
from asc.results import aggregate as aggregate  # re-exported: importable from here as before
from asc.results import format_table as format_table  # re-exported: importable from here as before

# keys that may change between a run and its resumption without changing its results
# (not cv.checkpoint: the folds of one experiment must be tested by the same rule)
RESUMABLE_KEYS = ("cv.folds", "cv.bag_of_frames", "cv.test", "cv.parallel_folds", "logger", "data.num_workers",
                  "data.root", "data.cache_dir", "trainer.devices",
                  "trainer.num_nodes", "trainer.strategy", "trainer.accelerator", "trainer.enable_progress_bar")


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


# keys added since configs were first written whose default does not keep what asc did
# before them: the value that does (an older config.yaml without the key gets it)
ADDED_WITH_NEW_BEHAVIOUR = {
    "cv.checkpoint": "best",  # before it existed the test scored the validation choice
}


def stored_config(path: Path) -> dict:
    """An experiment's config.yaml, with the keys added to asc since it was written taking
    their defaults, which keep what asc did before they existed, or else the values of
    :data:`ADDED_WITH_NEW_BEHAVIOUR`."""
    stored = OmegaConf.load(path)
    for key, value in ADDED_WITH_NEW_BEHAVIOUR.items():
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(stored, parent)
        if node is not None and leaf not in node:
            node[leaf] = value
    try:
        return to_dict(OmegaConf.merge(OmegaConf.structured(Config), stored))
    except Exception:  # noqa: BLE001 - a key this version no longer knows: compared as written
        return to_dict(stored)


def has_trained(exp_dir: Path) -> bool:
    """Whether any fold of the experiment has a checkpoint or a result: until then its
    config.yaml protects nothing, and a corrected command may replace it."""
    return any(exp_dir.glob("fold-*/result.json")) or any(exp_dir.glob("fold-*/checkpoints/*.ckpt"))


def differing_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs between two configs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differing_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return out


def conflict_message(cfg: DictConfig, exp_dir: Path, differing: list[str] | None = None) -> str:
    """The error for a folder that holds the same experiment name with another config, with
    advice that works: a sweep run's name is derived from its parameters, so a new
    experiment.name would be replaced again."""
    head = f"{exp_dir} already holds experiment {cfg.experiment.name!r} run with a different config"
    if differing:
        head += f" ({'; '.join(differing[:5])}{'; ...' if len(differing) > 5 else ''})"
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
        old, new = _comparable(stored_config(cfg_path)), _comparable(to_dict(cfg))
        if old != new:
            raise AscError(conflict_message(cfg, exp_dir, differing_keys(old, new)))
    if is_rank_zero:
        exp_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cfg_path, to_yaml(cfg))
    return exp_dir


def selected_folds(cfg: DictConfig, clips) -> list[int]:
    """The folds ``cv.folds`` names (default: all of the data set's), checked to exist."""
    available = sorted(clips.folds)
    folds = list(cfg.cv.folds) if cfg.cv.folds is not None else available
    repeated = sorted({k for k in folds if folds.count(k) > 1})
    if repeated:
        raise AscError(f"cv.folds={folds} names fold(s) {repeated} more than once; name each fold once")
    missing = [k for k in folds if k not in clips.folds]
    if missing:
        raise AscError(f"cv.folds={folds}: fold(s) {missing} do not exist in {clips.name}; available: {available}")
    return folds


def single_device(trainer: DictConfig) -> bool:
    """Whether ``trainer.devices`` and ``trainer.num_nodes`` name one device: 1, a list of one
    (``[0]``), ``auto`` on a CPU or a machine with at most one GPU, or -1 on a machine with one GPU."""
    import torch

    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if str(nodes) != "1":
        return False
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        return len(devices) == 1
    on_cpu = trainer.get("accelerator", "auto") == "cpu"
    if str(devices) == "auto":  # one CPU device, or every GPU
        return on_cpu or torch.cuda.device_count() <= 1
    if str(devices) == "-1":  # every GPU (Lightning refuses it on the CPU)
        return not on_cpu and torch.cuda.device_count() == 1
    return str(devices) in ("1", "None")


def run_cv(cfg: DictConfig, only_first: bool = False) -> dict:
    """Run every fold in ``cv.folds`` (default: all), or just the first with
    ``only_first``; write and return results.json's content.  ``cv.parallel_folds`` > 1
    runs the folds that are not finished as that many processes at once
    (:func:`run_folds_parallel`)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from asc.parallel import check_parallel
    from asc.tracking import aggregate_run, hold_sweep_env, where_runs_go

    parallel = check_parallel(cfg.cv.parallel_folds)
    is_zero = rank_zero_only.rank == 0
    if parallel > 1 and not single_device(cfg.trainer):
        raise AscError(f"cv.parallel_folds={parallel} runs each fold as its own process on one device: "
                       "use trainer.devices=1 (or cv.parallel_folds=1 to train each fold on several devices)")
    clips = load_clipset(cfg.data)
    folds = selected_folds(cfg, clips)
    if only_first:
        folds = folds[:1]
    exp_dir = prepare_experiment(cfg, is_zero)
    if is_zero and (line := where_runs_go(cfg, exp_dir)):
        print(line, flush=True)
    sweep_env = hold_sweep_env()
    collector = start_collector(cfg, clips, folds, exp_dir, is_zero)
    collector.describe_model()
    if parallel > 1:
        failed = run_folds_parallel(cfg, collector, parallel)
    else:
        failed = run_folds(cfg, clips, collector)
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


def start_collector(cfg: DictConfig, clips, folds: list[int], exp_dir: Path, is_zero: bool) -> FoldCollector:
    """The experiment's :class:`FoldCollector`, holding what results.json records beside
    the folds (computed on rank 0 only): the reproducibility record, the network's
    complexity and the clip-mean features of the bag-of-frames baseline."""
    from asc.baselines import clip_mean_features
    from asc.models.complexity import complexity_from_config
    from asc.repro import reproducibility_record

    record = reproducibility_record(to_dict(cfg), clips) if is_zero else {}
    # parameters and multiply-accumulates per second of audio of the network (and front-end)
    complexity = complexity_from_config(cfg, len(clips.class_names)) if is_zero else {}
    bof_feats = clip_mean_features(clips, cfg.features) if cfg.cv.bag_of_frames and is_zero else None
    return FoldCollector(cfg, clips, folds, exp_dir, record, complexity, bof_feats)


def run_folds(cfg: DictConfig, clips, collector: FoldCollector) -> list[int]:
    """The folds of ``collector`` one after the other in this process (each on all of
    ``trainer.devices``); each row goes to the collector on rank 0.  Returns the folds that
    failed: none, as an error stops the loop."""
    for i, k in enumerate(collector.folds, 1):
        row = collector.finished(k)
        trained = row is None
        if trained:
            row = run_fold(cfg, clips, k, collector.exp_dir, collector.complexity)
            if row is None:  # not rank 0
                continue
        row = collector.add(k, row)
        if trained:
            print(f"[{i}/{len(collector.folds)}] {fold_scores(k, row, row['seconds'])}", flush=True)
    return []


def fold_scores(k: int, row: dict, seconds: float) -> str:
    """The line printed as fold ``k`` ends, e.g. ``fold 2: finished in 118 s (val/acc
    96.88 %, test/acc 86.46 %)``, in sequential and parallel runs alike."""
    score = ", ".join(f"{key} {100 * row[key]:.2f} %" for key in ("val/acc", "test/acc") if key in row)
    return f"fold {k}: finished in {seconds:.0f} s ({score})"


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
            print(f"{progress} {fold_scores(job.key, row, job.seconds)}", flush=True)
        else:
            failed.append(job.key)
            reason = last_error(job.log) or f"exit status {job.returncode}"
            print(f"{progress} fold {job.key}: FAILED after {job.seconds:.0f} s ({reason}); log: {job.log}",
                  flush=True)

    run_jobs(jobs, n, started, finished)
    return sorted(failed)
