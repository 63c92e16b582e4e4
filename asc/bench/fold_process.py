"""One fold process of :func:`asc.bench.folds.bench_litis_parallel`:
``python -m asc.bench.fold_process '<json spec>'``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from asc.bench.common import make_cached_litis, process_memory
from asc.bench.folds import fold_config, time_fold
from asc.io import write_json_atomic


def run_fold_process(spec: dict) -> None:
    """One of :func:`bench_litis_parallel`'s fold processes: its split of the shared cache
    through :func:`time_fold`; the times written as JSON to ``spec["out"]``."""
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # set by child_env, as for cv.parallel_folds
    device, tmp = torch.device(spec["device"]), Path(spec["tmp"])
    cfg = fold_config(device, spec["epochs"], tmp, spec["overrides"])
    clips = make_cached_litis(tmp, cfg.data.sample_rate, spec["n_clips"], spec["clip_s"], split=True,
                              split_seed=spec["split_seed"], write=False)
    out = tmp / f"{Path(spec['out']).stem}-fold"
    test = clips.folds[1][1]
    write_json_atomic(Path(spec["out"]), {"split_seed": spec["split_seed"], "test_clips": [int(i) for i in test],
                                          **time_fold(cfg, clips, out, device),
                                          # VmHWM: this process's peak from its start, as for a fold of asc cv
                                          "process_memory_mb": process_memory()})


if __name__ == "__main__":
    run_fold_process(json.loads(sys.argv[1]))
