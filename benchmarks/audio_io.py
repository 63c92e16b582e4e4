"""Decoded-audio throughput: first epoch (decode + resample + cache write) vs later
epochs (memory-mapped cache), and peak RSS.

    python benchmarks/audio_io.py [--hours 1.0] [--rate 22050] [--out bench_audio.json]

Generates a folder-per-class data set of 30 s clips in mixed formats (44.1/48 kHz,
mono/stereo, 16/24-bit, FLAC) in a temporary folder, then loads it as `asc` does.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning  # noqa: E402,F401  - imported up front so "after imports" RSS means what it says
import torchaudio.functional  # noqa: E402,F401

from asc.config import load_config  # noqa: E402
from asc.data import load_clipset  # noqa: E402

FORMATS = [(44100, 2, "WAV", "PCM_16"), (48000, 1, "WAV", "PCM_24"), (44100, 1, "FLAC", "PCM_16"),
           (32000, 2, "WAV", "FLOAT")]


def make_dataset(root: Path, hours: float, seconds: float = 30.0) -> float:
    n = int(np.ceil(hours * 3600 / seconds))
    rng = np.random.default_rng(0)
    total = 0.0
    for i in range(n):
        sr, ch, fmt, sub = FORMATS[i % len(FORMATS)]
        x = (0.1 * rng.standard_normal((int(seconds * sr), ch))).astype(np.float32)
        ext = ".flac" if fmt == "FLAC" else ".wav"
        path = root / f"class{i % 4}" / f"clip{i:04d}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x, sr, format=fmt, subtype=sub)
        total += seconds
    return total


def read_epoch(clips) -> float:
    start = time.perf_counter()
    checksum = 0.0
    for i in range(len(clips)):
        checksum += float(clips.audio.get(i)[::4096].sum())
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--rate", type=int, default=22050)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="bench_audio.json")
    ap.add_argument("--generate", help=argparse.SUPPRESS)  # internal: write the data set and exit
    args = ap.parse_args()
    if args.generate:
        print(make_dataset(Path(args.generate), args.hours))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        # generated in a child process, so that this process's peak RSS is the loading alone
        out = subprocess.run([sys.executable, __file__, "--generate", tmp, "--hours", str(args.hours)],
                             check=True, capture_output=True, text=True).stdout
        audio_s = float(out.strip().splitlines()[-1])
        print(f"generated {audio_s / 3600:.2f} h of audio in {time.perf_counter() - t0:.1f} s")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cfg = load_config(overrides=["data.name=folder", f"data.root={root}", f"data.sample_rate={args.rate}",
                                     f"data.cache_dir={root}/.cache", "data.folder_folds=2"]).data
        t0 = time.perf_counter()
        clips = load_clipset(cfg)  # decode + resample + write the cache
        build = time.perf_counter() - t0
        first = build + read_epoch(clips)
        later = []
        for _ in range(args.epochs - 1):
            clips = load_clipset(cfg)  # a new process would do exactly this: open the cache
            later.append(read_epoch(clips))
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cache_mb = sum(p.stat().st_size for p in (root / ".cache").glob("*.f16")) / 2**20
    later_s = float(np.median(later))
    result = {"audio_hours": audio_s / 3600, "target_rate": args.rate, "first_epoch_s": first,
              "later_epoch_s": later_s, "first_epoch_audio_s_per_s": audio_s / first,
              "later_epoch_audio_s_per_s": audio_s / later_s, "speedup": first / later_s,
              "peak_rss_mb": rss_mb, "rss_after_imports_mb": rss_before, "cache_mb": cache_mb}
    print(f"{'':24s}{'wall s':>10s}{'audio s / wall s':>20s}")
    print(f"{'first epoch (decode)':24s}{first:10.2f}{audio_s / first:20.0f}")
    print(f"{'later epochs (cache)':24s}{later_s:10.2f}{audio_s / later_s:20.0f}")
    print(f"speed-up {first / later_s:.0f}x; peak RSS {rss_mb:.0f} MB ({rss_before:.0f} MB after imports); "
          f"cache {cache_mb:.0f} MB on disk")
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
