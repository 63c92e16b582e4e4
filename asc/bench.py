"""``asc bench``: how fast, how much memory.  Every rate is measured at steady state.

* Steady state: a measurement runs one warm-up epoch (start-up, DataLoader workers,
  allocator, kernels; excluded) and then 3 epochs of at least 50 batches each, and reports
  the median epoch rate (``--quick``: the same structure with 3 batches per epoch, for CPU
  smoke runs).  With data, an epoch is one pass of the DataLoader over a set of exactly
  that many batches of clips, as in training.
* Front-end throughput: nnAudio Gammatone and mel on the current device vs a NumPy
  reference of the same transform (STFT power through the same filterbank), in audio
  seconds per wall second, on a batch of 30 s clips at 22.05 kHz; the relative error
  between the two is reported.
* Training throughput on LITIS-shaped input (30 s clips at 22.05 kHz, 19 classes, the
  segment length and batch size of experiments/litis.yaml, its model size), in clips
  per second: STAP-CRNN and the CNN baseline, with and without BC, float32 and bf16
  autocast, with the data pipeline (memory-mapped float16 cache -> DataLoader -> device
  -> BC mix -> features -> model -> optimizer step) and without it (random waveforms
  already on the device, same steps after that).  The ratio shows whether loading is
  the bottleneck.
* Loader throughput: the same cached set through the DataLoader alone (to the device, no
  training) with 0/2/4/... workers, in clips per second, and training with data at each
  worker count against the random-tensor rate.
* ``cv.parallel_folds`` 1 -> N: wall time of ``asc cv`` on a demo-like config (the
  synthetic scenes of experiments/demo.yaml, fewer clips and epochs), in folds per minute,
  start-up included as a user sees it.
* torch.compile of the network, where it works.
* Model size and cost of the benchmarked networks: parameters and multiply-accumulates per
  second of audio (asc/models/complexity.py).
* Peak RSS, and peak device memory on GPU.

The JSON file is rewritten (atomically) as each section finishes, so a run that is killed
keeps the sections it finished.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from asc.augment import soft_target_kl
from asc.data.batches import segment_samples
from asc.data.device_audio import DeviceAudio

N_LITIS_CLASSES = 19
CLIP_SECONDS = 30.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn, device, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_power_filterbank(x: np.ndarray, n_fft: int, hop: int, basis: np.ndarray) -> np.ndarray:
    """Reference: centred (reflect-padded) STFT with a periodic Hann window, power, then
    the filterbank ``basis`` (n_bins, n_fft // 2 + 1).  x: (B, N) -> (B, n_bins, T)."""
    from scipy.signal import get_window

    window = get_window("hann", n_fft, fftbins=True)
    pad = n_fft // 2
    xp = np.pad(x, ((0, 0), (pad, pad)), mode="reflect")
    n_frames = 1 + (xp.shape[1] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    out = np.empty((x.shape[0], basis.shape[0], n_frames), dtype=np.float32)
    for b in range(x.shape[0]):  # one clip at a time keeps memory bounded
        spec = np.abs(np.fft.rfft(xp[b][idx] * window, axis=1)) ** 2  # (T, n_fft//2+1)
        out[b] = (basis @ spec.T).astype(np.float32)
    return out


def bench_frontends(device: torch.device, sample_rate: int = 22050, clips: int = 8) -> list[dict]:
    from asc.features import LogSpectrogram

    rng = np.random.default_rng(0)
    x_np = (0.1 * rng.standard_normal((clips, int(CLIP_SECONDS * sample_rate)))).astype(np.float32)
    x = torch.from_numpy(x_np).to(device)
    audio_s = clips * CLIP_SECONDS
    rows = []
    for name in ("gammatone", "mel"):
        fe = LogSpectrogram(name, sample_rate, 64, 40.0, 20.0, 50.0).to(device)
        layer = fe.layer
        basis = (layer.gammatone_basis if name == "gammatone" else layer.mel_basis).double().cpu().numpy()
        n_fft = int(round(sample_rate * 0.04))
        with torch.no_grad():
            layer(x[:1])  # warm-up (kernels, allocator)
            t_nn = _best_time(partial(layer, x), device)
            nn_out = layer(x[:2]).double().cpu().numpy()
        t_ref = _best_time(partial(numpy_power_filterbank, x_np, n_fft, fe.hop, basis), torch.device("cpu"), 1)
        ref = numpy_power_filterbank(x_np[:2].astype(np.float64), n_fft, fe.hop, basis)
        rel = float(np.linalg.norm(nn_out - ref) / np.linalg.norm(ref))
        rows.append({"frontend": name, "device": str(device), "nnaudio_audio_s_per_s": audio_s / t_nn,
                     "numpy_audio_s_per_s": audio_s / t_ref, "speedup": t_ref / t_nn, "relative_error": rel})
    return rows


def litis_shaped_config(overrides: list[str] | None = None):
    from asc.config import load_config

    cfg_file = Path(__file__).resolve().parents[1] / "experiments" / "litis.yaml"
    base = ["data.name=synthetic"]  # no root needed: the bench makes its own cached audio
    return load_config(cfg_file if cfg_file.exists() else None, base + list(overrides or []))


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
        _sync(device)
        t0 = time.perf_counter()
        epoch()
        _sync(device)
        rates.append(clips_per_epoch / (time.perf_counter() - t0))
    return {"clips_per_s": float(np.median(rates)), "epoch_clips_per_s": [round(r, 2) for r in rates]}


def make_cached_litis(tmp: Path, sample_rate: int, n_clips: int):
    """A LITIS-shaped ClipSet served from a memory-mapped float16 cache, like real data
    (random audio: a few random clips at varying gains, quick to write)."""
    from asc.data.audio import MemmapStore
    from asc.data.base import ClipSet

    n = int(CLIP_SECONDS * sample_rate)
    path = tmp / "litis_like.f16"
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
    return ClipSet("litis-like", [f"class{c}" for c in range(N_LITIS_CLASSES)], [f"clip{i}" for i in idx], labels,
                   {1: (idx, idx[:1])}, store)


def feature_step(cfg, n_classes: int, device: torch.device):
    """The step from a batch of waveforms on the device to features and soft targets, as in
    training: the DataModule's feature pipeline (gain, BC mix, front-end, standardisation,
    augmentation), its statistics marked fitted (they do not change the speed)."""
    from asc.pipeline import FeaturePipeline

    pipeline = FeaturePipeline(cfg, n_classes).to(device)
    pipeline.norm.fitted.fill_(True)
    return partial(pipeline.prepare, training=True)


def litis_loader(clips, segment: int, batch: int, workers: int, device: torch.device, on_device: bool = False):
    """The training DataLoader over the whole cached set, as the DataModule builds it (seeded
    crops): one pass is one epoch.  ``on_device``: the loader only names the crops, cut on
    the device from the audio held there (:func:`to_device`)."""
    from asc.data.batches import Collate, Crops, TrainCrops

    lengths = np.array([clips.audio.length(i) for i in range(len(clips))], dtype=np.int64)
    workers = 0 if on_device else workers
    return torch.utils.data.DataLoader(
        Crops(clips, read=not on_device), batch_sampler=TrainCrops(np.arange(len(clips)), lengths, segment, batch,
                                                                   drop_last=True, seed=0),
        collate_fn=Collate(False, segment or 0), num_workers=workers, persistent_workers=workers > 0,
        pin_memory=device.type == "cuda" and not on_device)


def to_device(batch: dict, device: torch.device, audio=None) -> dict:
    """A loader's batch on ``device``; rows are cut from ``audio`` (a DeviceAudio)."""
    batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    if "rows" in batch:
        batch["wave"], batch["length"] = audio.gather(batch.pop("rows"), batch.pop("width"))
    return batch


def bench_training(device: torch.device, clips, schedule: Schedule = FULL, precisions=("32", "bf16"),
                   overrides: list[str] | None = None) -> list[dict]:
    """Training rates of STAP-CRNN and the CNN, BC on/off, at each precision, with the data
    pipeline (from ``clips``, :func:`make_cached_litis`) and from random tensors."""
    from asc.config import validate

    cfg = litis_shaped_config(overrides)
    batch = cfg.data.batch_size
    rows = []
    for variant in ("stap", "cnn"):
        for mix in ("bc", "none"):
            for precision in precisions:
                run_cfg = cfg.copy()
                run_cfg.model.variant, run_cfg.augment.mix = variant, mix
                validate(run_cfg)
                setup = _training_setup(run_cfg, clips.class_names, device)
                loader = litis_loader(clips, segment_samples(cfg.data, cfg.data.sample_rate), batch,
                                      min(cfg.data.num_workers, 2), device)
                for pipeline in (True, False):
                    rate = _train_rate(*setup, loader if pipeline else None, device, precision, schedule)
                    rows.append({"model": variant if variant == "cnn" else "stap-crnn", "mix": mix,
                                 "precision": precision, "pipeline": "with data" if pipeline else "random tensors",
                                 **rate, "batch": batch, "segment_s": cfg.data.segment_seconds,
                                 "workers": loader.num_workers if pipeline else None})
                del loader
    return rows


def _train_rate(module, opt, features, random_batch, loader, device, precision, schedule: Schedule,
                audio=None) -> dict:
    """Steady-state training rate: from the DataLoader (one pass per epoch) when ``loader``
    is given, else from random waveforms already on the device (``schedule.batches`` steps
    per epoch)."""
    module.train()
    dtype = torch.bfloat16 if precision == "bf16" else None
    n = len(random_batch["label"])

    def step(batch):
        batch = features(batch)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits, _ = module(batch["spec"])
        loss = soft_target_kl(logits, batch["target"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def data_epoch():
        for batch in loader:
            step(to_device(batch, device, audio))

    def random_epoch():
        for _ in range(schedule.batches):
            step(dict(random_batch))

    if loader is not None:
        return steady_rate(data_epoch, len(loader) * n, schedule, device)
    return steady_rate(random_epoch, schedule.batches * n, schedule, device)


def _training_setup(cfg, class_names: list[str], device: torch.device):
    """Module, optimizer, the feature step (:func:`feature_step`) and a batch of random
    waveforms on the device."""
    from asc.config import to_dict
    from asc.module import SceneClassifier

    module = SceneClassifier(to_dict(cfg), class_names).to(device)
    features = feature_step(cfg, len(class_names), device)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    n = cfg.data.batch_size
    batch = {"wave": 0.1 * torch.randn(n, segment_samples(cfg.data, cfg.data.sample_rate), device=device),
             "label": torch.randint(0, len(class_names), (n,), device=device)}
    return module, opt, features, batch


def bench_compile(device: torch.device, schedule: Schedule = FULL, overrides: list[str] | None = None) -> list[dict]:
    """STAP-CRNN, no mixing, float32, random tensors: eager vs torch.compile'd network."""
    rows = []
    cfg = litis_shaped_config([*(overrides or []), "augment.mix=none"])
    setup = _training_setup(cfg, [f"class{c}" for c in range(N_LITIS_CLASSES)], device)
    eager = _train_rate(*setup, None, device, "32", schedule)
    rows.append({"model": "stap-crnn", "mix": "none", "precision": "32", "pipeline": "random tensors, eager",
                 **eager, "batch": cfg.data.batch_size, "segment_s": cfg.data.segment_seconds})
    t0 = time.perf_counter()
    try:
        setup[0].model = torch.compile(setup[0].model)
        compiled = _train_rate(*setup, None, device, "32", schedule)
        note = f"compiled (warm-up incl. compilation {time.perf_counter() - t0:.0f} s)"
    except Exception as e:  # noqa: BLE001 - report, don't fail the benchmark
        compiled = {"clips_per_s": float("nan")}
        note = f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    rows.append({"model": "stap-crnn", "mix": "none", "precision": "32", "pipeline": f"random tensors, {note}",
                 **compiled, "batch": cfg.data.batch_size, "segment_s": cfg.data.segment_seconds})
    return rows


def worker_counts(quick: bool) -> list[int]:
    """0, 2, 4, 8, ... up to the CPU count (quick: 0 and 2)."""
    cpus = os.cpu_count() or 1
    counts, w = [0], 2
    while w <= max(2, cpus) and not (quick and w > 2):
        counts.append(w)
        w *= 2
    return counts


def _load_epoch(loader, device: torch.device, audio=None) -> None:
    for batch in loader:
        to_device(batch, device, audio)


def bench_loader(device: torch.device, clips, schedule: Schedule = FULL, quick: bool = False,
                 overrides: list[str] | None = None) -> list[dict]:
    """``clips`` (:func:`make_cached_litis`) through the DataLoader alone (to the device) at
    each worker count, and a float32 STAP-CRNN + BC training epoch from it, against the
    random-tensor rate of the same step."""
    from asc.config import validate

    cfg = litis_shaped_config([*(overrides or []), "model.variant=stap", "augment.mix=bc"])
    validate(cfg)
    batch = cfg.data.batch_size
    rows = []
    setup = _training_setup(cfg, clips.class_names, device)
    random_rate = _train_rate(*setup, None, device, "32", schedule)["clips_per_s"]
    segment = segment_samples(cfg.data, cfg.data.sample_rate)
    audio = DeviceAudio(clips.audio, np.arange(len(clips)), device)  # data.on_device: the audio held there
    for workers in [*worker_counts(quick), "on device"]:
        on_device = workers == "on device"
        loader = litis_loader(clips, segment, batch, 0 if on_device else workers, device, on_device)
        held = audio if on_device else None
        alone = steady_rate(partial(_load_epoch, loader, device, held), len(loader) * batch, schedule, device)
        train = _train_rate(*setup, loader, device, "32", schedule, held)
        rows.append({"workers": workers, "loader_clips_per_s": alone["clips_per_s"],
                     "loader_epoch_clips_per_s": alone["epoch_clips_per_s"],
                     "train_clips_per_s": train["clips_per_s"], "random_clips_per_s": random_rate,
                     "ratio": train["clips_per_s"] / random_rate, "batch": batch, "clips": len(clips)})
        del loader
    return rows


def bench_parallel_folds(device: torch.device, quick: bool = False, levels: list[int] | None = None) -> list[dict]:
    """Wall time of ``asc cv`` with ``cv.parallel_folds`` = each of ``levels`` on a
    demo-like config (experiments/demo.yaml's synthetic scenes, 4 folds, fewer clips and
    epochs, no W&B), start-up included: folds per minute.  Each run writes to its own
    temporary folder (nothing is skipped)."""
    import subprocess
    import sys

    import asc

    root = Path(asc.__file__).resolve().parents[1]
    demo = root / "experiments" / "demo.yaml"
    cpu = device.type == "cpu"
    n_folds = 4
    if levels is None:
        levels = [1, max(2, min(n_folds, os.cpu_count() or 1))] if cpu else [1, 2, 4]
    epochs = 2 if quick else 10
    args = [*(["--config", str(demo)] if demo.exists() else []), "data.synthetic.clips_per_class=16",
            f"data.synthetic.n_folds={n_folds}", f"trainer.max_epochs={epochs}", "logger.mode=disabled",
            "cv.bag_of_frames=false", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
            f"trainer.accelerator={'cpu' if cpu else 'gpu'}", "experiment.name=bench-folds"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
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
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = base / r["wall_s"]
    return rows


def bench_complexity(overrides: list[str] | None = None) -> list[dict]:
    """Parameters and MACs per second of audio of the benchmarked networks (LITIS-shaped)."""
    from asc.models.complexity import complexity_from_config

    cfgs = {name: litis_shaped_config([*(overrides or []), f"model.variant={v}"])
            for name, v in (("stap-crnn", "stap"), ("cnn", "cnn"))}
    return [{"model": name, **complexity_from_config(cfg, N_LITIS_CLASSES)} for name, cfg in cfgs.items()]


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run(device: str = "auto", out: Path | None = None, quick: bool = False, compile_check: bool = True) -> dict:
    """Every section in turn (cheap ones first); the JSON at ``out`` is rewritten as each
    one finishes."""
    from asc.io import write_json_atomic

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    schedule = QUICK if quick else FULL
    t0 = time.perf_counter()
    result = {"machine": machine(), "device": str(dev), "quick": quick, "schedule": asdict(schedule), "sections": []}

    def finished(name: str, value) -> None:
        result[name] = value
        result["sections"].append(name)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if dev.type == "cuda":
            result["peak_device_memory_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        result["seconds"] = time.perf_counter() - t0
        if out:
            write_json_atomic(Path(out), result)
        print(f"bench: {name} done ({result['seconds']:.0f} s)", flush=True)

    finished("complexity", bench_complexity())
    finished("frontends", bench_frontends(dev, clips=2 if quick else 8))
    cfg = litis_shaped_config()
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_cached_litis(Path(tmp), cfg.data.sample_rate, n_clips=schedule.batches * cfg.data.batch_size)
        finished("loader", bench_loader(dev, clips, schedule, quick))
        finished("training", bench_training(dev, clips, schedule, precisions=("32",) if quick else ("32", "bf16")))
        del clips
    finished("parallel_folds", bench_parallel_folds(dev, quick))
    if compile_check:
        finished("compile", bench_compile(dev, schedule))
    return result


def format_result(r: dict) -> str:
    """The tables of the sections that finished (a partial JSON prints what it holds)."""
    m, sch = r["machine"], r.get("schedule", {})
    lines = [f"machine: {m.get('gpu', m['cpu'])}, {m['cpu_threads']} CPU threads, torch {m['torch']}, "
             f"device {r['device']}",
             f"steady state: median of {sch.get('epochs')} epochs of {sch.get('batches')} batches after "
             f"{sch.get('warmup')} warm-up epoch{' (--quick)' if r.get('quick') else ''}"]
    if "frontends" in r:
        lines += ["", "front-end (64 bands, 40/20 ms, 22.05 kHz, 30 s clips)   audio s per wall s",
                  f"{'':12s}{'nnAudio':>12s}{'NumPy ref':>12s}{'speed-up':>10s}{'rel. error':>12s}"]
        for f in r["frontends"]:
            lines.append(f"{f['frontend']:12s}{f['nnaudio_audio_s_per_s']:12.0f}{f['numpy_audio_s_per_s']:12.0f}"
                         f"{f['speedup']:10.1f}{f['relative_error']:12.1e}")
    if r.get("loader"):
        lo = r["loader"]
        lines += ["", f"loader, {lo[0]['clips']} cached LITIS-shaped clips (batch {lo[0]['batch']}, 4 s crops)   "
                  "clips per s", f"{'workers':>8s}{'loader alone':>14s}{'train (stap+bc)':>17s}{'random':>9s}"
                  f"{'ratio':>8s}"]
        for x in lo:
            lines.append(f"{str(x['workers']):>8s}{x['loader_clips_per_s']:14.1f}{x['train_clips_per_s']:17.1f}"
                         f"{x['random_clips_per_s']:9.1f}{x['ratio']:8.2f}")
    if r.get("training"):
        t = r["training"]
        lines += ["", f"training step, LITIS-shaped (19 classes, {t[0]['segment_s']} s segments of 30 s clips at "
                  f"22.05 kHz, batch {t[0]['batch']})   clips per s"]
        lines.append(f"{'model':10s}{'mix':6s}{'prec':6s}{'with data':>11s}{'random':>9s}{'ratio':>8s}")
        keyed = {(x["model"], x["mix"], x["precision"], x["pipeline"]): x["clips_per_s"] for x in t}
        for (model, mix, prec, pipe), v in keyed.items():
            if pipe != "with data":
                continue
            rnd = keyed[(model, mix, prec, "random tensors")]
            lines.append(f"{model:10s}{mix:6s}{prec:6s}{v:11.1f}{rnd:9.1f}{v / rnd:8.2f}")
    if r.get("parallel_folds"):
        p = r["parallel_folds"]
        lines += ["", f"asc cv, demo-like ({p[0]['folds']} folds, {p[0]['epochs']} epochs, start-up included)",
                  f"{'parallel_folds':>14s}{'wall s':>9s}{'folds/min':>11s}{'speed-up':>10s}"]
        for x in p:
            lines.append(f"{x['parallel_folds']:14d}{x['wall_s']:9.1f}{x['folds_per_min']:11.2f}{x['speedup']:10.2f}"
                         + (f"  error: {x['error']}" if "error" in x else ""))
    for x in r.get("compile", []):
        lines.append(("\n" if x is r["compile"][0] else "") +
                     f"torch.compile check: {x['pipeline'][16:]}: {x['clips_per_s']:.1f} clips/s")
    if "complexity" in r:
        from asc.models.complexity import format_complexity

        lines += ["", "model size and cost (multiply-accumulates per second of audio, segments back to back)"]
        lines += format_complexity(r["complexity"])
    lines.append("")
    lines.append(f"peak RSS {r['peak_rss_mb']:.0f} MB" + (f", peak device memory {r['peak_device_memory_mb']:.0f} MB"
                                                         if "peak_device_memory_mb" in r else "") +
                 f"; benchmark took {r['seconds']:.0f} s (sections: {', '.join(r.get('sections', []))})")
    return "\n".join(lines)
