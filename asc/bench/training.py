"""Training throughput on LITIS-shaped input (30 s clips at 22.05 kHz, 19 classes, the
frozen litis config's segment, batch and model), in clips per second at steady state:

* :func:`bench_training`: STAP-CRNN and the CNN, BC on/off, float32 and bf16 autocast, with
  the data pipeline (memory-mapped float16 cache -> DataLoader -> device -> BC mix ->
  features -> model -> optimizer step) and from random waveforms already on the device;
* :func:`bench_loader`: the DataLoader alone and feeding training at each worker count, and
  with the audio held on the device (``data.on_device``), against random tensors;
* :func:`bench_compile`: eager against ``torch.compile``'d network;
* :func:`bench_complexity`: parameters and multiply-accumulates per second of audio.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch

from asc.augment import soft_target_kl
from asc.bench import common
from asc.bench.common import FULL, Schedule, litis_loader, litis_shaped_config, steady_rate, sync, to_device
from asc.data.batches import segment_samples
from asc.data.device_audio import DeviceAudio


def feature_step(cfg, n_classes: int, device: torch.device):
    """The step from a batch of waveforms on the device to features and soft targets, as in
    training: the DataModule's feature pipeline (gain, BC mix, front-end, standardisation,
    augmentation), its statistics marked fitted (they do not change the speed)."""
    from asc.pipeline import FeaturePipeline

    pipeline = FeaturePipeline(cfg, n_classes).to(device)
    pipeline.norm.fitted.fill_(True)
    return partial(pipeline.prepare, training=True)


def training_setup(cfg, class_names: list[str], device: torch.device, fused: bool = False):
    """Module, optimizer (AdamW's fused kernel with ``fused``), the feature step
    (:func:`feature_step`) and a batch of random waveforms on the device."""
    from asc.config import to_dict
    from asc.module import SceneClassifier

    module = SceneClassifier(to_dict(cfg), class_names).to(device)
    features = feature_step(cfg, len(class_names), device)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3, fused=fused or None)
    n = cfg.data.batch_size
    batch = {"wave": 0.1 * torch.randn(n, segment_samples(cfg.data, cfg.data.sample_rate), device=device),
             "label": torch.randint(0, len(class_names), (n,), device=device), "padded": False}
    return module, opt, features, batch


def make_step(module, opt, features, device: torch.device, precision: str = "32"):
    """One training step on a batch of waveforms on the device, as training runs it:
    features, forward (bf16 autocast with ``precision="bf16"``; the network compiled under
    ``model.compile``), soft-target loss, backward, optimizer step."""
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step(batch):
        batch = features(batch)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits, _ = module.compiled(module.model)(batch["spec"])
        loss = soft_target_kl(logits, batch["target"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def train_rate(module, opt, features, random_batch, loader, device, precision, schedule: Schedule,
               audio=None) -> dict:
    """Steady-state training rate: from the DataLoader (one pass per epoch) when ``loader``
    is given, else from random waveforms already on the device (``schedule.batches`` steps
    per epoch)."""
    module.train()
    n = len(random_batch["label"])
    step = make_step(module, opt, features, device, precision)

    def data_epoch():
        for batch in loader:
            step(to_device(batch, device, audio))

    def random_epoch():
        for _ in range(schedule.batches):
            step(dict(random_batch))

    if loader is not None:
        return steady_rate(data_epoch, len(loader) * n, schedule, device)
    return steady_rate(random_epoch, schedule.batches * n, schedule, device)


def _profile_steps(step, batches, device: torch.device) -> dict:
    """:func:`profile_summary` of ``step`` over ``batches`` (a list of thunks giving a
    batch) under the PyTorch profiler (its overhead is in the wall time, so the busy
    fraction is a lower bound)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for get in batches:
            step(get())
        sync(device)  # inside: the last steps' kernels are recorded (one sync, not counted below)
        wall = time.perf_counter() - t0
    return profile_summary(prof.key_averages(), len(batches), wall, device.type == "cuda",
                           own_syncs=1 if device.type == "cuda" else 0)


def profile_summary(events, steps: int, wall_s: float, cuda: bool, own_syncs: int = 0) -> dict:
    """Per step, from the profiler's averaged ``events`` over ``steps`` steps in ``wall_s``:
    wall and device-busy milliseconds (the kernels' own time; the device-side ranges of
    annotated code, such as the optimizer's step, are not kernels and are left out, as
    PyTorch's own table does), the busy fraction (None off CUDA), kernel launches,
    host-device copies and synchronisations (less ``own_syncs``, the measurement's own)."""
    def count(match) -> float:
        return sum(e.count for e in events if match(e.key)) / steps

    busy_us = sum(getattr(e, "self_device_time_total", 0) for e in events
                  if "CUDA" in str(getattr(e, "device_type", "")) and not getattr(e, "is_user_annotation", False))
    syncs = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
    return {"steps": steps, "wall_ms_per_step": 1e3 * wall_s / steps, "device_busy_ms_per_step": busy_us / 1e3 / steps,
            "busy_fraction": busy_us / 1e6 / wall_s if cuda else None,
            "kernel_launches_per_step": count(lambda k: k.startswith(("cudaLaunch", "cuLaunch"))),
            "copies_per_step": count(lambda k: k in ("cudaMemcpyAsync", "cudaMemcpy")),
            "syncs_per_step": max(0.0, count(lambda k: k in syncs) - own_syncs / steps)}


def _next_on_device(batches, device: torch.device, audio) -> dict:
    return to_device(next(batches), device, audio)


def bench_step_profile(device: torch.device, clips, steps: int = 20, warmup: int = 5,
                       overrides: list[str] | None = None) -> list[dict]:
    """Where a float32 STAP-CRNN + BC training step's time goes, from random waveforms on
    the device and with the audio held on the device (rows in pageable memory as the
    DataModule gives them, and on a GPU also pinned):
    wall and device-busy milliseconds per step, kernel launches, copies and syncs
    (:func:`_profile_steps`; ``warmup`` steps first, as many as the batches allow).  A busy
    fraction well under 1 means the host, not the device, sets the pace."""
    from asc.config import validate

    cfg = litis_shaped_config([*(overrides or []), "model.variant=stap", "augment.mix=bc"])
    validate(cfg)
    module, opt, features, random_batch = training_setup(cfg, clips.class_names, device)
    module.train()
    step = make_step(module, opt, features, device)
    segment, batch = segment_samples(cfg.data, cfg.data.sample_rate), cfg.data.batch_size
    audio = DeviceAudio(clips.audio, np.arange(len(clips)), device)
    rows = []
    variants = [("random tensors", None), ("on device", False)] + ([("on device, pinned", True)]
                                                                   if device.type == "cuda" else [])
    for name, pin in variants:
        if pin is None:
            thunks = [lambda: dict(random_batch)] * (steps + warmup)
        else:
            loader = litis_loader(clips, segment, batch, 0, device, on_device=True, pin=pin)
            thunks = [partial(_next_on_device, iter(loader), device, audio)] * min(steps + warmup, len(loader))
        warm = min(warmup, len(thunks) - min(steps, len(thunks)))
        for get in thunks[:warm]:
            step(get())
        rows.append({"pipeline": name, "batch": batch, **_profile_steps(step, thunks[warm:], device)})
    return rows


def bench_training(device: torch.device, clips, schedule: Schedule = FULL, precisions=("32", "bf16"),
                   overrides: list[str] | None = None) -> list[dict]:
    """Training rates of STAP-CRNN and the CNN, BC on/off, at each precision, with the data
    pipeline (from ``clips``, :func:`~asc.bench.common.make_cached_litis`) and from random
    tensors."""
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
                setup = training_setup(run_cfg, clips.class_names, device)
                loader = litis_loader(clips, segment_samples(cfg.data, cfg.data.sample_rate), batch,
                                      min(cfg.data.num_workers, 2), device)
                for pipeline in (True, False):
                    rate = train_rate(*setup, loader if pipeline else None, device, precision, schedule)
                    rows.append({"model": variant if variant == "cnn" else "stap-crnn", "mix": mix,
                                 "precision": precision, "pipeline": "with data" if pipeline else "random tensors",
                                 **rate, "batch": batch, "segment_s": cfg.data.segment_seconds,
                                 "workers": loader.num_workers if pipeline else None})
                del loader
    return rows


def _load_epoch(loader, device: torch.device, audio=None) -> None:
    for batch in loader:
        to_device(batch, device, audio)


def bench_loader(device: torch.device, clips, schedule: Schedule = FULL, quick: bool = False,
                 overrides: list[str] | None = None) -> list[dict]:
    """``clips`` through the DataLoader alone (to the device) at each worker count and with
    the audio on the device, and a float32 STAP-CRNN + BC training epoch from it, against
    the random-tensor rate of the same step."""
    from asc.config import validate

    cfg = litis_shaped_config([*(overrides or []), "model.variant=stap", "augment.mix=bc"])
    validate(cfg)
    batch = cfg.data.batch_size
    rows = []
    setup = training_setup(cfg, clips.class_names, device)
    random_rate = train_rate(*setup, None, device, "32", schedule)["clips_per_s"]
    segment = segment_samples(cfg.data, cfg.data.sample_rate)
    audio = DeviceAudio(clips.audio, np.arange(len(clips)), device)  # data.on_device: the audio held there
    # "on device": rows in pageable memory, as the DataModule gives them; on a GPU also pinned,
    # what pinning them is worth (docs/benchmarks.md)
    pinned = ["on device, pinned"] if device.type == "cuda" else []
    for workers in [*common.worker_counts(quick), "on device", *pinned]:
        on_device = str(workers).startswith("on device")
        loader = litis_loader(clips, segment, batch, 0 if on_device else workers, device, on_device,
                              pin=True if workers in pinned else None)
        held = audio if on_device else None
        alone = steady_rate(partial(_load_epoch, loader, device, held), len(loader) * batch, schedule, device)
        train = train_rate(*setup, loader, device, "32", schedule, held)
        rows.append({"workers": workers, "loader_clips_per_s": alone["clips_per_s"],
                     "loader_epoch_clips_per_s": alone["epoch_clips_per_s"],
                     "train_clips_per_s": train["clips_per_s"], "random_clips_per_s": random_rate,
                     "ratio": train["clips_per_s"] / random_rate, "batch": batch, "clips": len(clips)})
        del loader
    return rows


COMPILE_MODES = ("default", "reduce-overhead")


def bench_compile(device: torch.device, schedule: Schedule = FULL, overrides: list[str] | None = None,
                  modes: tuple[str, ...] = COMPILE_MODES) -> list[dict]:
    """STAP-CRNN, no mixing, float32, random tensors: the eager step (on CUDA also with
    AdamW's fused kernel, as training uses it there) against ``model.compile`` in each of
    ``modes``: the network and the front-end ``torch.compile``'d as training runs them
    ("reduce-overhead" replays CUDA graphs, which removes the per-kernel launch cost that
    bounds a step on a GPU)."""
    classes = [f"class{c}" for c in range(common.N_LITIS_CLASSES)]
    cuda = device.type == "cuda"

    def measure(label: str, mode: str | None = None, fused: bool = False) -> dict:
        cfg = litis_shaped_config([*(overrides or []), "augment.mix=none", f"model.compile={mode or 'null'}"])
        module, opt, features, batch = training_setup(cfg, classes, device, fused)
        t0 = time.perf_counter()
        try:
            rate = train_rate(module, opt, features, batch, None, device, "32", schedule)
            note = label if mode is None else f"{label} (warm-up incl. compilation {time.perf_counter() - t0:.0f} s)"
        except Exception as e:  # noqa: BLE001 - report, don't fail the benchmark
            rate = {"clips_per_s": float("nan")}
            note = f"{label}: torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
        return {"model": "stap-crnn", "mix": "none", "precision": "32", "pipeline": f"random tensors, {note}",
                **rate, "batch": cfg.data.batch_size, "segment_s": cfg.data.segment_seconds}

    rows = [measure("eager")]
    if cuda:
        rows.append(measure("eager, fused AdamW", fused=True))
    fused_note = ", fused AdamW" if cuda else ""
    rows += [measure(f"model.compile={mode}{fused_note}", mode, fused=cuda) for mode in modes]
    return rows


def bench_complexity(overrides: list[str] | None = None) -> list[dict]:
    """Parameters and MACs per second of audio of the benchmarked networks (LITIS-shaped)."""
    from asc.models.complexity import complexity_from_config

    cfgs = {name: litis_shaped_config([*(overrides or []), f"model.variant={v}"])
            for name, v in (("stap-crnn", "stap"), ("cnn", "cnn"))}
    return [{"model": name, **complexity_from_config(cfg, common.N_LITIS_CLASSES)} for name, cfg in cfgs.items()]
