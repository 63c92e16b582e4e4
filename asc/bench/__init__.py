"""``asc bench``: how fast, how much memory.  Every rate is measured at steady state.

* Steady state (:mod:`asc.bench.common`): a measurement runs one warm-up epoch (start-up,
  DataLoader workers, allocator, kernels; excluded) and then 3 epochs of at least 50
  batches each, and reports the median epoch rate (``--quick``: the same structure with 3
  batches per epoch, for CPU smoke runs).  With data, an epoch is one pass of the
  DataLoader over a set of exactly that many batches of clips, as in training.
* Front-ends (:mod:`asc.bench.frontends`): nnAudio Gammatone and mel vs a NumPy reference.
* Loader and training (:mod:`asc.bench.training`): DataLoader workers and the audio held on
  the device, training rates of STAP-CRNN and the CNN (BC on/off, float32/bf16, with data
  and from random tensors), torch.compile, model size and cost.
* Where a training step's time goes (profiler: device-busy fraction, launches, copies,
  syncs per step; :func:`~asc.bench.training.bench_step_profile`).
* An end-to-end LITIS-shaped fold through ``asc cv``'s run_fold, with epoch, validation and
  test times and an estimate of the 20-split protocol; N LITIS-shaped folds side by side on
  one device and the protocol's estimate from them; ``cv.parallel_folds`` 1 -> N on a
  demo-like config (:mod:`asc.bench.folds`).
* ``asc predict --attention``: files per second with and without pictures
  (:mod:`asc.bench.pictures`).
* Peak RSS, of the whole run and of each section (the fold section's: the fold's main
  process, not its DataLoader or picture workers), and peak device memory on GPU.

LITIS-shaped sections use ``benchmarks/litis_b6efd54.yaml`` (experiments/litis.yaml as of
commit b6efd54, frozen).  The JSON file is rewritten (atomically) as each section finishes,
so a run that is killed keeps the sections it finished.
"""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from asc.bench.common import (
    FULL,
    QUICK,
    Schedule,
    litis_shaped_config,
    machine,
    make_cached_litis,
    process_memory,
    steady_rate,
)
from asc.bench.folds import bench_litis_fold, bench_litis_parallel, bench_parallel_folds, protocol_estimate
from asc.bench.frontends import bench_frontends, numpy_power_filterbank
from asc.bench.pictures import bench_pictures
from asc.bench.report import format_result
from asc.bench.training import bench_compile, bench_complexity, bench_loader, bench_step_profile, bench_training

__all__ = ["FULL", "QUICK", "SECTIONS", "Schedule", "bench_compile", "bench_complexity", "bench_frontends",
           "bench_litis_fold", "bench_litis_parallel", "bench_loader", "bench_parallel_folds", "bench_pictures",
           "bench_step_profile", "bench_training", "format_result", "litis_shaped_config", "machine",
           "make_cached_litis", "numpy_power_filterbank", "protocol_estimate", "run", "steady_rate"]

# sizes of the end-to-end sections: (clips, epochs) of the LITIS-shaped fold, files of predict
FOLD_FULL, FOLD_QUICK = (3026, 4), (120, 2)
PICTURES_FULL, PICTURES_QUICK = 32, 6


def _device(device: str) -> torch.device:
    from asc.inference import inference_device

    return inference_device(device)


SECTIONS = ("complexity", "frontends", "loader", "training", "step_profile", "litis_fold", "pictures",
            "litis_parallel", "parallel_folds", "compile")


def run(device: str = "auto", out: Path | None = None, quick: bool = False, compile_check: bool = True,
        sections: list[str] | None = None, fold_overrides: list[str] | None = None) -> dict:
    """Every section in turn (cheap and most telling first; ``compile_check=False`` leaves
    out torch.compile), or only ``sections`` (names of :data:`SECTIONS`; ``pictures``
    needs ``litis_fold``'s checkpoint and runs with it); ``fold_overrides`` (``key=value``)
    change the LITIS-shaped folds' config; the JSON at ``out`` is rewritten as each one
    finishes."""
    from asc.io import write_json_atomic

    wanted = set(sections) if sections else set(SECTIONS) - (set() if compile_check else {"compile"})
    dev = _device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    schedule = QUICK if quick else FULL
    t0 = time.perf_counter()
    fold_overrides = list(fold_overrides or [])
    result = {"machine": machine(), "device": str(dev), "quick": quick, "schedule": asdict(schedule), "sections": [],
              "fold_overrides": fold_overrides,
              "section_memory_mb": {}, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    process_memory(reset_peak=True)

    def finished(name: str, value) -> None:
        result[name] = value
        result["sections"].append(name)
        section = process_memory(reset_peak=True)
        result["section_memory_mb"][name] = section
        # the whole run's peak: the sections' peaks (each reset restarts ru_maxrss too)
        result["peak_rss_mb"] = max(result["peak_rss_mb"], section.get("peak", 0.0),
                                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        if dev.type == "cuda":
            result["peak_device_memory_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        result["seconds"] = time.perf_counter() - t0
        if out:
            write_json_atomic(Path(out), result)
        print(f"bench: {name} done ({result['seconds']:.0f} s)", flush=True)

    _run_sections(wanted, dev, schedule, quick, finished, fold_overrides)
    return result


def _run_sections(wanted: set[str], dev: torch.device, schedule: Schedule, quick: bool, finished,
                  fold_overrides: list[str]) -> None:
    """The ``wanted`` sections in their order, each handed to ``finished(name, result)``."""
    if "complexity" in wanted:
        finished("complexity", bench_complexity())
    if "frontends" in wanted:
        finished("frontends", bench_frontends(dev, clips=2 if quick else 8))
    cfg = litis_shaped_config()
    if wanted & {"loader", "training", "step_profile"}:
        with tempfile.TemporaryDirectory() as tmp:
            clips = make_cached_litis(Path(tmp), cfg.data.sample_rate, n_clips=schedule.batches * cfg.data.batch_size)
            if "loader" in wanted:
                finished("loader", bench_loader(dev, clips, schedule, quick))
            if "training" in wanted:
                finished("training", bench_training(dev, clips, schedule,
                                                    precisions=("32",) if quick else ("32", "bf16")))
            if "step_profile" in wanted:
                finished("step_profile", bench_step_profile(dev, clips, *((2, 1) if quick else (20, 5))))
            del clips
    n_clips, epochs = FOLD_QUICK if quick else FOLD_FULL
    if wanted & {"litis_fold", "pictures"}:
        with tempfile.TemporaryDirectory() as tmp:
            fold = bench_litis_fold(dev, Path(tmp), n_clips, epochs, overrides=fold_overrides)
            finished("litis_fold", fold)
            if "pictures" in wanted:
                n_files = PICTURES_QUICK if quick else PICTURES_FULL
                finished("pictures", bench_pictures(dev, fold["tested_checkpoint"], Path(tmp), n_files))
    if "litis_parallel" in wanted:
        with tempfile.TemporaryDirectory() as tmp:
            finished("litis_parallel", bench_litis_parallel(dev, Path(tmp), n_clips=n_clips,
                                                            epochs=2 if quick else 3, overrides=fold_overrides))
    if "parallel_folds" in wanted:
        finished("parallel_folds", bench_parallel_folds(dev, quick))
    if "compile" in wanted:
        finished("compile", bench_compile(dev, schedule))
