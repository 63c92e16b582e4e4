"""``asc bench``: how fast, how much memory.

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
* torch.compile of the network, where it works.
* Model size and cost of the benchmarked networks: parameters and multiply-accumulates per
  second of audio (asc/models/complexity.py).
* Peak RSS, and peak device memory on GPU.
"""

from __future__ import annotations

import json
import platform
import resource
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from asc.augment import soft_target_kl

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


def make_cached_litis(tmp: Path, sample_rate: int, n_clips: int):
    """A LITIS-shaped ClipSet served from a memory-mapped float16 cache, like real data."""
    from asc.data.audio import MemmapStore
    from asc.data.base import ClipSet

    n = int(CLIP_SECONDS * sample_rate)
    path = tmp / "litis_like.f16"
    data = np.memmap(path, dtype=np.float16, mode="w+", shape=(n_clips * n,))
    rng = np.random.default_rng(0)
    for i in range(n_clips):
        data[i * n:(i + 1) * n] = (0.1 * rng.standard_normal(n)).astype(np.float16)
    data.flush()
    del data
    store = MemmapStore(path, np.arange(n_clips) * n, np.full(n_clips, n), sample_rate)
    labels = np.arange(n_clips) % N_LITIS_CLASSES
    idx = np.arange(n_clips)
    return ClipSet("litis-like", [f"class{c}" for c in range(N_LITIS_CLASSES)], [f"clip{i}" for i in idx], labels,
                   {1: (idx, idx[:1])}, store)


def bench_training(device: torch.device, steps: int = 6, warmup: int = 2, precisions=("32", "bf16"),
                   overrides: list[str] | None = None, compile_check: bool = True) -> list[dict]:
    from asc.config import validate
    from asc.data.batches import Collate, Crops, TrainCrops

    cfg = litis_shaped_config(overrides)
    sr, batch = cfg.data.sample_rate, cfg.data.batch_size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_cached_litis(Path(tmp), sr, n_clips=max(2 * batch, 64))
        for variant in ("stap", "cnn"):
            for mix in ("bc", "none"):
                for precision in precisions:
                    run_cfg = cfg.copy()
                    run_cfg.model.variant, run_cfg.augment.mix = variant, mix
                    validate(run_cfg)
                    module, opt, random_batch = _training_setup(run_cfg, clips.class_names, device)
                    lengths = np.array([clips.audio.length(i) for i in range(len(clips))])
                    loader = torch.utils.data.DataLoader(
                        Crops(clips), batch_sampler=TrainCrops(np.arange(len(clips)), lengths, module.segment, batch,
                                                               drop_last=True, seed=0),
                        collate_fn=Collate(False, module.segment or 0), num_workers=min(cfg.data.num_workers, 2),
                        persistent_workers=cfg.data.num_workers > 0, pin_memory=device.type == "cuda")
                    for pipeline in (True, False):
                        rate = _train_rate(module, opt, loader, random_batch, device, precision, pipeline, steps,
                                           warmup)
                        rows.append({"model": variant if variant == "cnn" else "stap-crnn", "mix": mix,
                                     "precision": precision, "pipeline": "with data" if pipeline else "random tensors",
                                     "clips_per_s": rate, "batch": batch, "segment_s": cfg.data.segment_seconds})
        if compile_check:
            rows += bench_compile(cfg, clips, device, steps, warmup)
    return rows


def _train_rate(module, opt, loader, random_batch, device, precision, pipeline, steps, warmup) -> float:
    module.train()
    it = iter(loader)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step():
        nonlocal it
        if pipeline:
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        else:
            batch = dict(random_batch)
        batch = module.bench_pipeline.prepare(batch, training=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits, _ = module(batch["spec"])
        loss = soft_target_kl(logits, batch["target"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * len(random_batch["label"]) / (time.perf_counter() - t0)


def _training_setup(cfg, class_names: list[str], device: torch.device):
    """Module (normalisation marked fitted: statistics do not change the speed), optimizer,
    and a batch of random waveforms on the device."""
    from asc.config import to_dict
    from asc.module import SceneClassifier
    from asc.pipeline import FeaturePipeline

    module = SceneClassifier(to_dict(cfg), class_names).to(device)
    # the DataModule's feature pipeline, carried with the module for the timing loop
    module.bench_pipeline = FeaturePipeline(cfg, len(class_names)).to(device)
    module.bench_pipeline.norm.fitted.fill_(True)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    n = cfg.data.batch_size
    batch = {"wave": 0.1 * torch.randn(n, module.segment, device=device),
             "label": torch.randint(0, len(class_names), (n,), device=device)}
    return module, opt, batch


def bench_compile(cfg, clips, device, steps, warmup) -> list[dict]:
    """STAP-CRNN, no mixing, float32, random tensors: eager vs torch.compile'd network."""
    rows = []
    cfg = cfg.copy()
    cfg.augment.mix = "none"
    module, opt, batch = _training_setup(cfg, clips.class_names, device)
    eager = _train_rate(module, opt, [], batch, device, "32", False, steps, warmup)
    rows.append({"model": "stap-crnn", "mix": "none", "precision": "32", "pipeline": "random tensors, eager",
                 "clips_per_s": eager, "batch": cfg.data.batch_size, "segment_s": cfg.data.segment_seconds})
    t0 = time.perf_counter()
    try:
        module.model = torch.compile(module.model)
        compiled = _train_rate(module, opt, [], batch, device, "32", False, steps, warmup)
        note = f"compiled (warm-up incl. compilation {time.perf_counter() - t0:.0f} s)"
    except Exception as e:  # noqa: BLE001 - report, don't fail the benchmark
        compiled, note = float("nan"), f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    rows.append({"model": "stap-crnn", "mix": "none", "precision": "32", "pipeline": f"random tensors, {note}",
                 "clips_per_s": compiled, "batch": cfg.data.batch_size, "segment_s": cfg.data.segment_seconds})
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
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    frontends = bench_frontends(dev, clips=2 if quick else 8)
    # steps per measurement: a CPU step of the LITIS-sized model takes seconds, a GPU step milliseconds
    steps, warmup = (2, 1) if quick else ((3, 1) if dev.type == "cpu" else (20, 5))
    training = bench_training(dev, steps=steps, warmup=warmup, precisions=("32",) if quick else ("32", "bf16"),
                              compile_check=compile_check)
    result = {"machine": machine(), "device": str(dev), "frontends": frontends, "training": training,
              "complexity": bench_complexity(),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "seconds": time.perf_counter() - t0}
    if dev.type == "cuda":
        result["peak_device_memory_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    if out:
        Path(out).write_text(json.dumps(result, indent=2))
    return result


def format_result(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m.get('gpu', m['cpu'])}, {m['cpu_threads']} CPU threads, torch {m['torch']}, "
             f"device {r['device']}", "",
             "front-end (64 bands, 40/20 ms, 22.05 kHz, 30 s clips)   audio s per wall s",
             f"{'':12s}{'nnAudio':>12s}{'NumPy ref':>12s}{'speed-up':>10s}{'rel. error':>12s}"]
    for f in r["frontends"]:
        lines.append(f"{f['frontend']:12s}{f['nnaudio_audio_s_per_s']:12.0f}{f['numpy_audio_s_per_s']:12.0f}"
                     f"{f['speedup']:10.1f}{f['relative_error']:12.1e}")
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
    for x in t:
        if x["pipeline"].startswith("random tensors,"):
            lines.append(f"torch.compile check: {x['pipeline'][16:]}: {x['clips_per_s']:.1f} clips/s")
    if "complexity" in r:
        from asc.models.complexity import format_complexity

        lines += ["", "model size and cost (multiply-accumulates per second of audio, segments back to back)"]
        lines += format_complexity(r["complexity"])
    lines.append("")
    lines.append(f"peak RSS {r['peak_rss_mb']:.0f} MB" + (f", peak device memory {r['peak_device_memory_mb']:.0f} MB"
                                                         if "peak_device_memory_mb" in r else "") +
                 f"; benchmark took {r['seconds']:.0f} s")
    return "\n".join(lines)
