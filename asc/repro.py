"""A reproducibility record for results.json: which code (git commit, uncommitted
changes), which packages, how many CPU threads, which device, and which data (a
fingerprint of the clips, labels, folds and audio)."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "torchaudio", "lightning", "torchmetrics", "nnAudio", "wandb", "omegaconf", "numpy",
            "soundfile")


def git_state(path: Path | None = None) -> dict | None:
    """Commit and dirty flag (tracked files changed) of the checkout holding the asc
    package, or None when it is not a git checkout (an installed wheel)."""
    root = path or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_record(trainer_cfg: dict) -> dict:
    import torch

    record = {k: trainer_cfg.get(k) for k in ("accelerator", "devices", "num_nodes", "strategy", "precision")}
    record["platform"] = platform.platform()
    record["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    if torch.cuda.is_available():
        record["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return record


def data_fingerprint(clips) -> dict:
    """A hash of what the experiment saw: item names, labels, folds, and the audio (the
    decoded-audio cache key for file data sets, which hashes paths, sizes, times and the
    rate; the waveforms themselves for generated data)."""
    import numpy as np

    h = hashlib.blake2b(digest_size=8)
    h.update("\n".join(map(str, clips.items)).encode("utf-8", "backslashreplace"))
    h.update(np.asarray(clips.labels, dtype=np.int64).tobytes())
    for k in sorted(clips.folds):
        train, test = clips.folds[k]
        h.update(f"{k}:".encode() + np.asarray(train, np.int64).tobytes() + np.asarray(test, np.int64).tobytes())
    cache_key = None
    path = getattr(clips.audio, "path", None)
    if path is not None:
        cache_key = Path(path).stem
        h.update(cache_key.encode())
    elif hasattr(clips.audio, "waves"):
        h.update(np.ascontiguousarray(clips.audio.waves).tobytes())
    return {"name": clips.name, "n_clips": len(clips), "fingerprint": h.hexdigest(), "cache_key": cache_key,
            "sample_rate": clips.audio.sample_rate}


def reproducibility_record(cfg_dict: dict, clips) -> dict:
    import torch

    return {
        "git": git_state(),
        "packages": package_versions(),
        "threads": {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "cpu_count": os.cpu_count()},
        "device": device_record(cfg_dict.get("trainer", {})),
        "data": data_fingerprint(clips),
    }
