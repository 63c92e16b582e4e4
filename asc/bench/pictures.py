"""Files per second of ``asc predict`` on 30 s recordings, with ``--attention`` (one picture
per file) and without, from a trained checkpoint (the LITIS-shaped fold's best)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from asc.bench.common import sync


def write_recordings(folder: Path, n: int, sample_rate: int, seconds: float) -> list[Path]:
    """``n`` WAV files (16-bit) of noise at varying gains."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    files = []
    for i in range(n):
        path = folder / f"rec{i:04d}.wav"
        sf.write(path, (0.1 * rng.uniform(0.5, 2.0) * rng.standard_normal(int(seconds * sample_rate))).clip(-1, 1),
                 sample_rate, subtype="PCM_16")
        files.append(path)
    return files


def _files_per_s(model, files: list[Path], out: Path, attention: bool, device: torch.device) -> dict:
    from asc.predict import predict_files

    predict_files(model, files[:1], out / "warm-up", attention=attention, progress=False)  # kernels, matplotlib
    sync(device)
    t0 = time.perf_counter()
    rows = predict_files(model, files, out / ("with" if attention else "without"), attention=attention,
                         progress=False)
    sync(device)
    took = time.perf_counter() - t0
    assert all(r["status"] == "ok" for r in rows)
    return {"files_per_s": len(files) / took, "seconds": round(took, 2)}


def bench_pictures(device: torch.device, checkpoint: str | Path, tmp: Path, n_files: int = 16,
                   seconds: float = 30.0) -> dict:
    """``predict_files`` over ``n_files`` recordings of ``seconds`` (model loaded once, one
    file of warm-up excluded), with attention pictures and without."""
    from asc.inference import load

    model = load(checkpoint, str(device))
    files = write_recordings(tmp / "recordings", n_files, model.sample_rate, seconds)
    without = _files_per_s(model, files, tmp / "predict", False, device)
    with_pictures = _files_per_s(model, files, tmp / "predict", True, device)
    return {"files": n_files, "clip_s": seconds, "without_pictures": without, "with_pictures": with_pictures,
            "picture_s_per_file": 1 / with_pictures["files_per_s"] - 1 / without["files_per_s"],
            **_picture_parts(model, files[0], tmp / "parts", n_files)}


def _picture_parts(model, path: Path, out: Path, n_files: int) -> dict:
    """What a picture costs: one drawn in this process (median of 3); starting the picture
    processes ``predict`` starts for ``n_files`` files (0 when it starts none) until they
    answer, their start-up imports of the drawing code included, and the longest of those
    imports among the processes that answered (:func:`~asc.picture_writer.warm_up`)."""
    from asc.data.audio import read_audio
    from asc.picture_writer import _start_pool, draw_attention_picture, import_seconds, picture_workers

    out.mkdir(parents=True, exist_ok=True)
    analysis = model.analyse_clip(read_audio(path, model.sample_rate)[0])
    times = []
    for k in range(3):
        t0 = time.perf_counter()
        draw_attention_picture(out / f"p{k}.png", analysis, model.frontend.hop / model.sample_rate, "bench",
                               class_names=model.class_names)
        times.append(time.perf_counter() - t0)
    workers = picture_workers(n_files)
    t0 = time.perf_counter()
    pool = _start_pool(workers) if workers else None
    imports = [0.0]
    try:
        if pool is not None:  # every process up: a task runs only after its process's start-up import
            imports = list(pool.map(import_seconds, range(workers)))
        started = time.perf_counter() - t0
    finally:
        if pool is not None:
            pool.shutdown()
    return {"one_picture_s": float(np.median(times)), "picture_workers": workers, "pool_start_s": started,
            "worker_import_s": max(imports)}
