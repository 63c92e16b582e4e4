"""What every section of ``asc bench`` shares: the steady-state schedule and its timer, the
machine description, the LITIS-shaped config (``benchmarks/litis_b6efd54.yaml``, frozen) and
a LITIS-shaped set of clips in a memory-mapped float16 cache, and the training DataLoader
over it."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

N_LITIS_CLASSES = 19
CLIP_SECONDS = 30.0
ROOT = Path(__file__).resolve().parents[2]
# experiments/litis.yaml as of commit b6efd54, the config of the first numbers:
# every LITIS-shaped section uses it, so that later changes to litis.yaml do not move them
FROZEN_LITIS = ROOT / "benchmarks" / "litis_b6efd54.yaml"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn, device, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


@dataclass(frozen=True)
class Schedule:
    """A steady-state measurement: ``warmup`` epochs excluded, then ``epochs`` epochs of
    ``batches`` batches each; the median epoch rate is reported."""

    batches: int = 50
    epochs: int = 3
    warmup: int = 1


FULL = Schedule()
QUICK = Schedule(batches=3)


def steady_rate(epoch, clips_per_epoch: int, schedule: Schedule, device: torch.device) -> dict:
    """Run ``epoch()`` (one epoch of work) ``warmup + epochs`` times; the clips per second of
    each measured epoch and their median."""
    for _ in range(schedule.warmup):
        epoch()
    rates = []
    for _ in range(schedule.epochs):
        sync(device)
        t0 = time.perf_counter()
        epoch()
        sync(device)
        rates.append(clips_per_epoch / (time.perf_counter() - t0))
    return {"clips_per_s": float(np.median(rates)), "epoch_clips_per_s": [round(r, 2) for r in rates]}


def process_memory(reset_peak: bool = False) -> dict:
    """This process's memory in MB from /proc/self/status (Linux; {} elsewhere): ``peak``
    (VmHWM: the resident peak since the process started or since the last reset), ``anon``
    (RssAnon: its own pages) and ``file`` (RssFile: mapped file pages such as the
    memory-mapped audio cache, shared and reclaimable).  ``reset_peak`` restarts the peak
    afterwards (/proc/self/clear_refs), so that each bench section gets its own;
    ``peak_reset`` says whether that worked.  The reset also restarts what
    ``getrusage().ru_maxrss`` reports for this process."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        memory = {name: int(fields[key].split()[0]) / 1024 for name, key in
                  (("peak", "VmHWM"), ("anon", "RssAnon"), ("file", "RssFile"))}
    except (OSError, KeyError, ValueError):
        return {}
    if reset_peak:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            memory["peak_reset"] = True
        except OSError:
            memory["peak_reset"] = False
    return memory


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def litis_shaped_config(overrides: list[str] | None = None):
    """The frozen LITIS config with the bench's own audio (no data root needed)."""
    from asc.config import load_config

    base = ["data.name=synthetic"]
    return load_config(FROZEN_LITIS if FROZEN_LITIS.exists() else None, base + list(overrides or []))


def litis_split(labels: np.ndarray, seed: int = 0, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """A train/test split shaped like one of LITIS's official ones: 20 % of each class tested."""
    from asc.data.base import stratified_split

    return stratified_split(np.arange(len(labels)), labels, test_fraction, seed)


def make_cached_litis(tmp: Path, sample_rate: int, n_clips: int, clip_seconds: float = CLIP_SECONDS,
                      split: bool = False, split_seed: int = 0, write: bool = True):
    """A LITIS-shaped ClipSet served from a memory-mapped float16 cache, like real data
    (random audio: a few random clips at varying gains, quick to write).  Fold 1 is one clip
    tested (a training set), or with ``split`` an official-like 80/20 split
    (:func:`litis_split`, drawn with ``split_seed``).  ``write=False`` opens the cache an
    earlier call wrote in ``tmp`` (the folds run side by side share one)."""
    from asc.data.audio import MemmapStore
    from asc.data.base import ClipSet

    n = int(clip_seconds * sample_rate)
    path = tmp / "litis_like.f16"
    if write:
        data = np.memmap(path, dtype=np.float16, mode="w+", shape=(n_clips * n,))
        rng = np.random.default_rng(0)
        pool = (0.1 * rng.standard_normal((min(n_clips, 8), n))).astype(np.float32)
        for i in range(n_clips):
            data[i * n:(i + 1) * n] = (pool[i % len(pool)] * rng.uniform(0.5, 2.0)).astype(np.float16)
        data.flush()
        del data
    store = MemmapStore(path, np.arange(n_clips) * n, np.full(n_clips, n), sample_rate)
    labels = np.arange(n_clips) % N_LITIS_CLASSES
    idx = np.arange(n_clips)
    folds = {1: litis_split(labels, split_seed) if split else (idx, idx[:1])}
    return ClipSet("litis-like", [f"class{c}" for c in range(N_LITIS_CLASSES)], [f"clip{i}" for i in idx], labels,
                   folds, store)


def litis_loader(clips, segment: int, batch: int, workers: int, device: torch.device, on_device: bool = False,
                 pin: bool | None = None):
    """The training DataLoader over the whole cached set, as the DataModule builds it (seeded
    crops): one pass is one epoch.  ``on_device``: the loader only names the crops, cut on
    the device from the audio held there (:func:`to_device`).  ``pin``: batches in pinned
    memory on a GPU; by default, as the DataModule does, those its workers read, not the
    rows of audio held on the device (a few bytes: pinning them measured no gain)."""
    from asc.data.batches import Collate, Crops, TrainCrops

    lengths = np.array([clips.audio.length(i) for i in range(len(clips))], dtype=np.int64)
    workers = 0 if on_device else workers
    return torch.utils.data.DataLoader(
        Crops(clips, read=not on_device), batch_sampler=TrainCrops(np.arange(len(clips)), lengths, segment, batch,
                                                                   drop_last=True, seed=0),
        collate_fn=Collate(False, segment or 0), num_workers=workers, persistent_workers=workers > 0,
        pin_memory=device.type == "cuda" and (not on_device if pin is None else pin))


def to_device(batch: dict, device: torch.device, audio=None) -> dict:
    """A loader's batch on ``device``; rows are cut from ``audio`` (a DeviceAudio)."""
    batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    return audio.cut(batch) if "rows" in batch else batch


def worker_counts(quick: bool) -> list[int]:
    """0, 2, 4, 8, ... up to the CPU count (quick: 0 and 2)."""
    cpus = os.cpu_count() or 1
    counts, w = [0], 2
    while w <= max(2, cpus) and not (quick and w > 2):
        counts.append(w)
        w *= 2
    return counts
