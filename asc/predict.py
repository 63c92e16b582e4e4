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
import torch
from omegaconf import OmegaConf

from asc.data.audio import AUDIO_EXTENSIONS, BadAudio, display_name, read_audio
from asc.errors import AscError


def load_model(checkpoint: str | Path, device: str = "auto"):
    """The :class:`~asc.module.SceneClassifier` stored in ``checkpoint``, in eval mode."""
    from asc.checkpoints import migrate
    from asc.config import Config, to_dict
    from asc.module import SceneClassifier

    path = resolve_checkpoint(checkpoint)
    not_torch = checkpoint_file_problem(path)
    if not_torch:
        raise AscError(f"{display_name(path)!r} is not a loadable weights-only PyTorch checkpoint: {not_torch}; "
                       "use a .ckpt written by "
                       "`asc train` or `asc cv` (<output_dir>/<experiment>/fold-<k>/checkpoints/best.ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - many formats of failure, one message
        if "Weights only load failed" in str(e) or "weights_only" in str(e):
            raise AscError(f"{display_name(path)!r} holds Python objects beyond tensors and plain containers; asc "
                           "loads checkpoints weights-only and will not unpickle them (it was not written by asc, "
                           "or by an incompatible version)") from None
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise AscError(f"{display_name(path)!r} is not a loadable weights-only PyTorch checkpoint ({first})") from None
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if "cfg" not in hp or "class_names" not in hp or "state_dict" not in ckpt:
        raise AscError(f"{display_name(path)!r} is not an asc checkpoint (no config, class names or weights); "
                       "use a checkpoint written by `asc train` or `asc cv`")
    hp = migrate(ckpt)["hyper_parameters"]  # older checkpoints upgraded to this version's schema
    try:
        cfg = to_dict(OmegaConf.merge(OmegaConf.structured(Config), hp["cfg"]))
    except Exception as e:  # noqa: BLE001
        raise AscError(f"the config stored in {display_name(path)!r} does not fit this version of asc ({e})") from None
    model = SceneClassifier(cfg, hp["class_names"], hp.get("fold"))
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise AscError(f"{display_name(path)!r} does not match the model its config describes ({detail} ...); "
                       "was it written by another version of asc, or edited?") from None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AscError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    return model.to(device).eval()


def checkpoint_file_problem(path: Path) -> str | None:
    """Why a file cannot be a PyTorch checkpoint, judged by its first bytes (a zip archive,
    or an old-style pickle), or None when it may be one."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "its first bytes are neither a zip archive nor a pickle"
    first = text.strip().splitlines()[0][:60] if text.strip() else ""
    return f"it is a text file (starting {first!r})"


def resolve_checkpoint(ref: str | Path, search_root: str | Path = "runs") -> Path:
    """A checkpoint path, or a W&B run id of a fold (its best checkpoint is found under
    ``search_root``, the default ``output_dir``)."""
    path = Path(ref)
    if path.is_file():
        return path
    if not path.suffix and "/" not in str(ref) and Path(search_root).is_dir():
        for id_file in Path(search_root).glob("**/fold-*/wandb_run_id"):
            if id_file.read_text().strip() == str(ref):
                best = id_file.parent / "checkpoints" / "best.ckpt"
                return best if best.is_file() else id_file.parent / "checkpoints" / "last.ckpt"
    raise AscError(f"checkpoint {display_name(path)!r} not found (neither a file nor the W&B run id of a fold "
                   f"under {search_root}/); checkpoints live in <output_dir>/<experiment>/fold-<k>/checkpoints/")


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

    out_dir.mkdir(parents=True, exist_ok=True)
    names = model.class_names
    top_k = max(1, min(top_k, len(names)))
    seg_s = model.cfg.data.segment_seconds
    rows = []
    for path in tqdm(files, desc="predicting", unit="file", disable=not progress):
        row = {"file": display_name(path)}
        try:
            wave, _ = read_audio(path, model.sample_rate)
        except (BadAudio, OSError) as e:
            rows.append({**row, "status": "error", "error": str(e)})
            continue
        analysis = model.analyse_clip(wave, max_segments_per_batch=batch_segments, with_spec=attention)
        probs = analysis["probs"]
        order = np.argsort(probs)[::-1][:top_k]
        row.update(status="ok", prediction=names[order[0]], probability=float(probs[order[0]]),
                   top_k=[{"class": names[i], "probability": float(probs[i])} for i in order],
                   duration_s=round(len(wave) / model.sample_rate, 3),
                   segments={"start_s": [round(s / model.sample_rate, 3) for s in analysis["starts"]],
                             "length_s": seg_s,
                             "probabilities": np.round(analysis["segment_probs"], 5).tolist()})
        if attention:
            from asc.viz import attention_figure, band_frequencies, picture_name, save

            png = out_dir / "attention" / picture_name(path, row["prediction"])
            png.parent.mkdir(exist_ok=True)
            fig = attention_figure(analysis, model.frontend.hop / model.sample_rate,
                                   f"{display_name(path.name)}: {row['prediction']} ({row['probability']:.2f})",
                                   class_names=names, band_hz=band_frequencies(model.frontend))
            save(fig, png)
            row["attention_png"] = str(png)
        rows.append(row)
    write_outputs(rows, names, out_dir, top_k)
    return rows


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
    lines = [f"{'file':<{width}}  {'prediction':<20}  prob"]
    for r in rows[:limit]:
        name = r["file"][-width:]
        if r["status"] == "ok":
            lines.append(f"{name:<{width}}  {r['prediction']:<20}  {r['probability']:.2f}")
        else:
            lines.append(f"{name:<{width}}  {'(error)':<20}  {r['error']}")
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in predictions.csv")
    lines.append(f"{len(ok)} of {len(rows)} files classified" +
                 (f"; {len(rows) - len(ok)} could not be read" if len(ok) < len(rows) else ""))
    return "\n".join(lines)
