"""Whole folds through ``asc cv``'s own code:

* :func:`bench_litis_fold`: one LITIS-shaped fold (3 026 clips of 30 s at 22.05 kHz in a
  float16 cache, 19 classes, an official-like 80/20 split, the frozen litis config) through
  :func:`asc.fold.run_fold` with W&B off, a few epochs: training time per epoch
  (steady: the first epoch excluded), validation time per epoch, the final validation of the
  chosen checkpoint and the test, each timed by a Lightning callback (:class:`FoldTimes`);
  and from them an estimate of the whole 20-split protocol at the config's epochs;
* :func:`bench_litis_parallel`: N LITIS-shaped folds side by side on one device, each its own
  process as ``cv.parallel_folds`` runs them, and the protocol's estimate from them;
* :func:`bench_parallel_folds`: wall time of ``asc cv`` with ``cv.parallel_folds`` 1 -> N.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from statistics import fmean

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from asc.bench.common import FROZEN_LITIS, ROOT, litis_shaped_config, make_cached_litis, process_memory, sync

LITIS_SPLITS = 20


class FoldTimes(Callback):
    """Wall seconds of each training epoch (its validation excluded), each validation during
    fit (the sanity check excluded), the validations after fit, the test loop and the test
    with what follows it (the fold's attention pictures, drawn at the test's end by the
    callback before this one); and this process's memory (:func:`process_memory`) as fit
    starts, after the first training epoch and after the test."""

    def __init__(self, device: torch.device):
        self.device = device
        self.memory: dict[str, dict] = {}
        self.train: list[float] = []
        self.val: list[float] = []
        self.after_fit_val: list[float] = []
        self.test: list[float] = []
        self.test_end: list[float] = []
        self._epoch = self._start = 0.0
        self._val_in_epoch = 0.0

    def _now(self) -> float:
        sync(self.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, module) -> None:
        self._epoch, self._val_in_epoch = self._now(), 0.0

    def on_fit_start(self, trainer, module) -> None:
        self.memory["fit_start"] = process_memory()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.train.append(self._now() - self._epoch - self._val_in_epoch)
        if len(self.train) == 1:
            self.memory["first_epoch"] = process_memory()

    def on_validation_start(self, trainer, module) -> None:
        self._start = self._now()

    def on_validation_end(self, trainer, module) -> None:
        took = self._now() - self._start
        if trainer.sanity_checking:
            return
        if trainer.state.fn == "fit":
            self.val.append(took)
            self._val_in_epoch += took
        else:
            self.after_fit_val.append(took)

    def on_test_start(self, trainer, module) -> None:
        self._start = self._now()

    def on_test_epoch_end(self, trainer, module) -> None:
        self.test.append(self._now() - self._start)

    def on_test_end(self, trainer, module) -> None:
        self.test_end.append(self._now() - self._start - self.test[-1])
        self.memory["test_end"] = process_memory()


def fold_config(device: torch.device, epochs: int, tmp: Path, overrides: list[str] | None = None):
    cpu = device.type == "cpu"
    return litis_shaped_config([
        f"trainer.max_epochs={epochs}", "logger.mode=disabled", "logger.progress=none",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        f"trainer.accelerator={'cpu' if cpu else 'gpu'}", f"output_dir={tmp}", "experiment.name=bench-litis-fold",
        *(overrides or [])])


def time_fold(cfg, clips, out_dir: Path, device: torch.device) -> dict:
    """Fold 1 of ``clips`` through ``run_fold`` (into ``out_dir``), timed by :class:`FoldTimes`:
    seconds of each part; ``steady_epoch_s`` is the median training epoch after the first
    (the first when there is only one)."""
    from asc.fold import run_fold

    times = FoldTimes(device)
    t0 = time.perf_counter()
    row = run_fold(cfg, clips, 1, out_dir, callbacks=(times,))
    wall = time.perf_counter() - t0
    steady = times.train[1:] or times.train
    return {"n_train": row["n_train"], "n_val": row["n_val"], "n_test": row["n_test"],
            "epoch_train_s": [round(t, 3) for t in times.train], "steady_epoch_s": float(np.median(steady)),
            "epoch_val_s": [round(t, 3) for t in times.val],
            "val_s": float(np.median(times.val)) if times.val else 0.0,
            "final_val_s": float(sum(times.after_fit_val)), "test_s": float(sum(times.test)),
            "test_pictures_s": float(sum(times.test_end)), "fold_wall_s": round(wall, 2),
            "test_acc": row.get("test/acc"), "tested_checkpoint": row["tested_checkpoint"],
            "memory_mb_at": times.memory}


def bench_litis_fold(device: torch.device, tmp: Path, n_clips: int = 3026, epochs: int = 4,
                     clip_seconds: float = 30.0, overrides: list[str] | None = None) -> dict:
    """One LITIS-shaped fold through ``run_fold`` in ``tmp`` (its checkpoints stay there:
    the pictures section reuses the best one), :func:`time_fold`'s times in seconds, and
    the sequential protocol's estimate."""
    cfg = fold_config(device, epochs, tmp, overrides)
    t0 = time.perf_counter()
    clips = make_cached_litis(tmp, cfg.data.sample_rate, n_clips, clip_seconds, split=True)
    cache_s = time.perf_counter() - t0
    process_memory(reset_peak=True)  # writing the cache maps every page of it: not the fold's
    times = time_fold(cfg, clips, tmp / cfg.experiment.name, device)
    result = {"clips": n_clips, "clip_s": clip_seconds, "classes": len(clips.class_names), "epochs": epochs,
              "batch": cfg.data.batch_size, "segment_s": cfg.data.segment_seconds,
              "config": FROZEN_LITIS.name, "cache_write_s": round(cache_s, 2), **times,
              # the fold's main process from its start to its end (DataLoader and picture
              # workers are processes of their own)
              "fold_memory_mb": process_memory()}
    result["estimate"] = protocol_estimate(result, int(litis_shaped_config().trainer.max_epochs))
    return result


def protocol_estimate(fold: dict, epochs: int, splits: int = LITIS_SPLITS, parallel: int = 1) -> dict:
    """The whole protocol (``splits`` folds of ``epochs`` epochs, validation and test
    included) extrapolated from a measured fold: per fold, the fold's fixed cost (its wall
    time less its epochs at the steady rate: what the first epoch took beyond it, such as
    compiling under ``model.compile``, stays in the fixed cost) plus ``epochs`` x (steady
    training epoch + validation); with ``parallel`` folds side by side (measured so: their
    fold times are those of a fold among ``parallel``), ceil(splits / parallel) waves of
    such folds."""
    measured_epochs = len(fold["epoch_train_s"]) * fold["steady_epoch_s"] + sum(fold["epoch_val_s"])
    fixed = max(0.0, fold["fold_wall_s"] - measured_epochs)
    per_fold = fixed + epochs * (fold["steady_epoch_s"] + fold["val_s"])
    waves = math.ceil(splits / parallel)
    how = ("sequential folds (cv.parallel_folds=1)" if parallel == 1 else
           f"{parallel} folds side by side (cv.parallel_folds={parallel}), {waves} waves")
    return {"splits": splits, "epochs": epochs, "parallel_folds": parallel, "fold_fixed_s": round(fixed, 2),
            "fold_s": round(per_fold, 1), "protocol_min": round(waves * per_fold / 60, 1), "how": how}


def bench_litis_parallel(device: torch.device, tmp: Path, levels: list[int] | None = None, n_clips: int = 3026,
                         epochs: int = 3, clip_seconds: float = 30.0, overrides: list[str] | None = None) -> list[dict]:
    """LITIS-shaped folds side by side on one device, as ``cv.parallel_folds`` runs them:
    for each N of ``levels``, N processes (each :func:`time_fold` on its own official-like
    split of one shared cache, its own copy of the audio on the device, the threads
    ``cv.parallel_folds`` gives it, test pictures included) started at once.  Per level:
    the mean steady epoch and validation of a fold among N, the wall time from the start of
    the processes to the end of the last (start-up, cache, audio to the device and pictures
    included; it stands for every fold's wall time in the estimate), the epoch-throughput
    speed-up over N = 1 and the 20-split protocol's estimate at the frozen config's epochs."""
    from asc.parallel import threads_per_child

    cpu = device.type == "cpu"
    # on a GPU 1 and 8 (on an H200 4 side by side gave 3.07x the epochs per second of one,
    # 8 gave 3.73x: docs/benchmarks.md), so that the GPU bench keeps to its 5 minutes
    levels = levels or ([1, 2] if cpu else [1, 8])
    cfg = fold_config(device, epochs, tmp, overrides)
    make_cached_litis(tmp, cfg.data.sample_rate, n_clips, clip_seconds, split=True)  # shared by every process
    full_epochs = int(litis_shaped_config().trainer.max_epochs)
    rows = []
    for n in levels:
        threads = threads_per_child(n, cpu)
        specs = [{"device": str(device), "tmp": str(tmp), "n_clips": n_clips, "clip_s": clip_seconds,
                  "epochs": epochs, "split_seed": k, "overrides": list(overrides or []),
                  "out": str(tmp / f"p{n}-{k}.json")} for k in range(n)]
        wall, failed = _run_fold_processes(specs, tmp / f"p{n}", threads)
        row = {"parallel_folds": n, "epochs": epochs, "wall_s": round(wall, 1), "threads_per_process": threads}
        if failed:
            rows.append({**row, "error": "; ".join(failed)})
            continue
        folds = [json.loads(Path(spec["out"]).read_text()) for spec in specs]
        trained = min(len(f["epoch_train_s"]) for f in folds)  # the same for all, unless one stopped early
        validated = min(len(f["epoch_val_s"]) for f in folds)
        fold = {"epoch_train_s": list(np.mean([f["epoch_train_s"][:trained] for f in folds], axis=0)),
                "epoch_val_s": list(np.mean([f["epoch_val_s"][:validated] for f in folds], axis=0)),
                "steady_epoch_s": float(np.mean([f["steady_epoch_s"] for f in folds])),
                "val_s": float(np.mean([f["val_s"] for f in folds])), "fold_wall_s": wall}
        rows.append({**row, **{k: v for k, v in fold.items() if k != "fold_wall_s"},
                     "test_pictures_s": float(np.mean([f["test_pictures_s"] for f in folds])),
                     # the largest peak RSS of the N fold processes, each from its start to its end
                     "process_peak_rss_mb": max(f.get("process_memory_mb", {}).get("peak", 0.0) for f in folds),
                     "estimate": protocol_estimate(fold, full_epochs, parallel=n)})
    alone = next((r for r in rows if r["parallel_folds"] == 1 and "error" not in r), None)
    for r in rows:
        if alone and "error" not in r:
            # epochs trained per second, N folds side by side against one alone
            r["epoch_speedup"] = r["parallel_folds"] * alone["steady_epoch_s"] / r["steady_epoch_s"]
    return rows


def _run_fold_processes(specs: list[dict], log_prefix: Path, threads: int) -> tuple[float, list[str]]:
    """One fold process per spec, all at once, through ``cv.parallel_folds``' own runner
    (:func:`asc.parallel.run_jobs`: Ctrl-C stops them all); the wall seconds and a line per
    process that failed (its exit code and error; logs at ``<log_prefix>-<k>.log``)."""
    import sys

    from asc.parallel import Job, child_env, last_error, run_jobs

    env = child_env(threads)
    jobs = [Job(k, f"fold process {k}", [sys.executable, "-m", "asc.bench.fold_process", json.dumps(spec)],
                Path(f"{log_prefix}-{k}.log"), env) for k, spec in enumerate(specs)]
    t0 = time.perf_counter()
    run_jobs(jobs, len(jobs))
    wall = time.perf_counter() - t0
    failed = [f"{job.label} exited with {job.returncode}: {last_error(job.log) or 'see ' + str(job.log)}"
              for job in jobs if job.returncode != 0]
    return wall, failed


def bench_parallel_folds(device: torch.device, quick: bool = False, levels: list[int] | None = None) -> list[dict]:
    """Wall time of ``asc cv`` with ``cv.parallel_folds`` = each of ``levels`` on a
    demo-like config (experiments/demo.yaml's synthetic scenes, 4 folds, fewer clips and
    epochs, no W&B), start-up included: folds per minute.  ``overlap_speedup`` leaves the
    start-up of the fold processes out: N x (mean fold time alone / mean fold time with N
    side by side), each fold timed inside its process (train, validate, test), the gain in
    fold throughput once the processes run.  Each run writes to its own temporary folder
    (nothing is skipped)."""
    import subprocess
    import sys

    demo = ROOT / "experiments" / "demo.yaml"
    cpu = device.type == "cpu"
    n_folds = 4
    if levels is None:
        levels = [1, max(2, min(n_folds, os.cpu_count() or 1))] if cpu else [1, 4]
    epochs = 2 if quick else 10
    args = [*(["--config", str(demo)] if demo.exists() else []), "data.synthetic.clips_per_class=16",
            f"data.synthetic.n_folds={n_folds}", f"trainer.max_epochs={epochs}", "logger.mode=disabled",
            "cv.bag_of_frames=false", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
            f"trainer.accelerator={'cpu' if cpu else 'gpu'}", "experiment.name=bench-folds"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in levels:
            out = Path(tmp) / f"p{n}"
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "asc.cli", "cv", *args, f"output_dir={out}",
                                   f"cv.parallel_folds={n}"], capture_output=True, text=True, cwd=tmp, env=env)
            wall = time.perf_counter() - t0
            row = {"parallel_folds": n, "folds": n_folds, "epochs": epochs, "wall_s": round(wall, 1),
                   "folds_per_min": n_folds * 60 / wall, "threads_per_process": 1 if cpu and n > 1 else None}
            if proc.returncode != 0:
                row["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
            else:
                res = json.loads((out / "bench-folds" / "results.json").read_text())
                row["fold_s"] = [f["seconds"] for f in res["folds"]]  # train + validate + test, in its process
                row["test_acc"] = res["mean"].get("test/acc")
            rows.append(row)
    return parallel_speedups(rows, n_folds)


def parallel_speedups(rows: list[dict], n_folds: int) -> list[dict]:
    """Add to each row of :func:`bench_parallel_folds` (the first one with one fold at a
    time): ``speedup`` in wall time; where the folds ran in full waves of N, ``overlap_speedup``
    (N x mean fold time alone / mean fold time among N) and ``outside_folds_s``, the wall time
    outside the folds' own timers (waves x mean fold time subtracted); and for N > 1
    ``startup_per_wave_s``: how much more of that a wave of fold processes costs than the
    single process's once (imports, data), the price each fold process pays to start."""
    base, alone = rows[0]["wall_s"], rows[0].get("fold_s")
    for r in rows:
        r["speedup"] = base / r["wall_s"]
        n = r["parallel_folds"]
        # N folds side by side (only when they run in full waves of N), each timed inside its process
        if alone and r.get("fold_s") and rows[0]["parallel_folds"] == 1 and n_folds % n == 0:
            r["overlap_speedup"] = n * fmean(alone) / fmean(r["fold_s"])
            r["outside_folds_s"] = r["wall_s"] - n_folds // n * fmean(r["fold_s"])
            if n > 1:
                r["startup_per_wave_s"] = (r["outside_folds_s"] - rows[0]["outside_folds_s"]) / (n_folds // n)
    return rows

