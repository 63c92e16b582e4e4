"""Write the synthetic scenes to disk as WAV + meta.csv, so file loaders run on them too."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import soundfile as sf

from asc.data.synthetic import from_config


def write_synthetic(data_cfg, out: Path) -> dict:
    """``out/audio/<class>_<index>.wav`` (16-bit PCM) and ``out/meta.csv`` with columns
    filename, label, fold, events (JSON list of event boxes: onset/offset s, fmin/fmax Hz)."""
    gen = from_config(data_cfg)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    with open(out / "meta.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "label", "fold", "events"])
        for i in range(len(gen)):
            clip = gen[i]
            name = f"audio/{gen.class_names[clip.label]}_{i:05d}.wav"
            sf.write(out / name, clip.wave, gen.sample_rate, subtype="PCM_16")
            writer.writerow([name, gen.class_names[clip.label], gen.fold(i),
                             json.dumps([e.as_dict() for e in clip.events])])
    return {"n_clips": len(gen), "n_classes": gen.n_classes, "n_folds": gen.n_folds}
