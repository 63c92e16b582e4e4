"""Classify recordings with a trained checkpoint: ``asc predict``.

A checkpoint alone is enough: it carries the class names, the front-end (its filterbank
is a buffer), the normalisation statistics and the config.  Checkpoints are loaded with
``weights_only=True``: nothing but tensors and plain containers is unpickled.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from asc.checkpoints import checkpoint_file_problem, resolve_checkpoint  # noqa: F401 - re-exported
from asc.data.audio import AUDIO_EXTENSIONS, BadAudio, display_name, read_audio
from asc.errors import AscError
from asc.inference import Predictor, load  # noqa: F401 - re-exported
from asc.tables import format_table


def load_model(checkpoint: str | Path, device: str = "auto") -> Predictor:
    """The :class:`~asc.inference.Predictor` stored in ``checkpoint`` (an alias of
    :func:`asc.inference.load`)."""
    return load(checkpoint, device)


def collect_audio(paths: list[str]) -> list[Path]:
    """Files given directly, plus audio files found (recursively) in folders given."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        elif p.is_file():
            files.append(p)
        else:
            raise AscError(f"{display_name(p)!r} is neither a file nor a folder")
    if not files:
        raise AscError(f"no audio files in {', '.join(map(str, paths))}")
    return files


def predict_files(model, files: list[Path], out_dir: Path, top_k: int = 3, attention: bool = False,
                  batch_segments: int = 64, progress: bool = True) -> list[dict]:
    """Classify every file; write ``predictions.csv`` and ``predictions.json`` (and with
    ``attention`` one PNG per file) to ``out_dir``.  Unreadable files get an ``error``
    row instead of stopping the run."""
    from tqdm.auto import tqdm

    from asc.picture_writer import PictureWriter, picture_workers

    out_dir.mkdir(parents=True, exist_ok=True)
    top_k = max(1, min(top_k, len(model.class_names)))
    rows = []
    try:  # the rows classified so far are written even when a picture fails or Ctrl-C stops it
        # the pictures are drawn by background processes while the next files are classified
        with PictureWriter(picture_workers(len(files)) if attention else 0) as pictures:
            for path in tqdm(files, desc="predicting", unit="file", disable=not progress):
                rows.append(_predict_file(model, path, top_k, batch_segments, pictures if attention else None,
                                          out_dir))
    finally:
        write_outputs(rows, model.class_names, out_dir, top_k)
    return rows


def _predict_file(model, path: Path, top_k: int, batch_segments: int, pictures, out_dir: Path) -> dict:
    """One row of predictions.json (an ``error`` row for an unreadable file); its attention
    picture handed to ``pictures`` (a :class:`~asc.picture_writer.PictureWriter`; None: no picture)."""
    row = {"file": display_name(path)}
    try:
        wave, _ = read_audio(path, model.sample_rate)
    except (BadAudio, OSError) as e:
        return {**row, "status": "error", "error": str(e)}
    names = model.class_names
    analysis = model.analyse_clip(wave, max_segments_per_batch=batch_segments, with_spec=pictures is not None)
    probs = analysis["probs"]
    order = np.argsort(probs)[::-1][:top_k]
    row.update(status="ok", prediction=names[order[0]], probability=float(probs[order[0]]),
               top_k=[{"class": names[i], "probability": float(probs[i])} for i in order],
               duration_s=round(len(wave) / model.sample_rate, 3),
               segments={"start_s": [round(s / model.sample_rate, 3) for s in analysis["starts"]],
                         "length_s": model.cfg.data.segment_seconds,
                         "probabilities": np.round(analysis["segment_probs"], 5).tolist()})
    if pictures is not None:
        from asc.viz import band_frequencies, picture_name

        png = out_dir / "attention" / picture_name(path, row["prediction"])
        png.parent.mkdir(exist_ok=True)
        pictures.draw(png, analysis, model.frontend.hop / model.sample_rate,
                      f"{display_name(path.name)}: {row['prediction']} ({row['probability']:.2f})",
                      class_names=names, band_hz=band_frequencies(model.frontend))
        row["attention_png"] = str(png)
    return row


def write_outputs(rows: list[dict], class_names: list[str], out_dir: Path, top_k: int) -> None:
    with open(out_dir / "predictions.json", "w") as f:
        json.dump({"classes": class_names, "files": rows}, f, indent=1)
    with open(out_dir / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        header = ["file", "status", "prediction", "probability"]
        for k in range(1, top_k + 1):
            header += [f"top{k}", f"top{k}_probability"]
        w.writerow(header + ["n_segments", "duration_s", "error"])
        for r in rows:
            if r["status"] != "ok":
                w.writerow([r["file"], r["status"], "", ""] + [""] * (2 * top_k) + ["", "", r["error"]])
                continue
            tops = []
            for t in r["top_k"]:
                tops += [t["class"], f"{t['probability']:.4f}"]
            w.writerow([r["file"], "ok", r["prediction"], f"{r['probability']:.4f}", *tops,
                        len(r["segments"]["start_s"]), r["duration_s"], ""])


def summary(rows: list[dict], limit: int = 20) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    width = min(60, max([len(r["file"]) for r in rows] + [4]))
    cells = [[r["file"][-width:], r["prediction"], f"{r['probability']:.2f}"] if r["status"] == "ok"
             else [r["file"][-width:], "(error)", r["error"]] for r in rows[:limit]]
    lines = [format_table(["file", "prediction", "prob"], cells, align="lll", widths=[width, 20, 0], rule=False)]
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in predictions.csv")
    lines.append(f"{len(ok)} of {len(rows)} files classified" +
                 (f"; {len(rows) - len(ok)} could not be read" if len(ok) < len(rows) else ""))
    return "\n".join(lines)
