"""``asc export``: the network with its front-end as TorchScript or ONNX.

The exported graph maps waveform segments (B, N) at the checkpoint's sample rate and
segment length (a whole-clip model: clips of any length N) to class probabilities (B, C):
front-end (with the per-segment mean removal of ``features.subtract_clip_mean``),
standardisation and network in one file.
Clip decisions aggregate the segment probabilities (see ``predict``).  When the front-end
cannot be exported, the network alone is written (input: standardised log spectrogram)
and the sidecar JSON says how to compute its input.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asc.errors import AscError


class SegmentClassifier(nn.Module):
    """Waveform segments (B, N) -> probabilities (B, C); or spectrograms (B, F, T) ->
    probabilities when ``with_frontend`` is False."""

    def __init__(self, model, with_frontend: bool = True):
        super().__init__()
        self.with_frontend = with_frontend
        self.pipeline, self.net = model.pipeline, model.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_frontend:
            x = self.pipeline.features(x)
        logits, _ = self.net(x)
        return torch.softmax(logits, dim=-1)


def _example(model, with_frontend: bool, batch: int = 2, seconds: float | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    # a segment, or for whole-clip models a clip of ``seconds`` (10 s by default)
    n = model.segment or int((seconds or 10.0) * model.sample_rate)
    wave = 0.1 * torch.randn(batch, n, generator=gen)
    return wave if with_frontend else model.features(wave)


def _export(model, fmt: str, path: Path, with_frontend: bool) -> None:
    wrapper = SegmentClassifier(model, with_frontend).eval()
    # batch of 1: the ONNX GRU then takes any batch size (its initial state is not baked in)
    example = _example(model, with_frontend, batch=1)
    # a whole-clip model (no segment length) takes clips of any length: the last axis is dynamic too
    dynamic_input = {0: "batch", **({example.dim() - 1: "samples" if with_frontend else "frames"}
                                     if model.segment is None else {})}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            traced = torch.jit.trace(wrapper, example, check_trace=False)
            traced.save(str(path))
        else:
            torch.onnx.export(wrapper, (example,), str(path), input_names=["input"], output_names=["probabilities"],
                              dynamic_axes={"input": dynamic_input, "probabilities": {0: "batch"}},
                              opset_version=17, dynamo=False)


def _check_lengths(model) -> tuple[float | None, ...]:
    """Input lengths (seconds) the exported file is checked on: the segment (None), and for a
    whole-clip model two clip lengths, as it takes any."""
    return (None,) if model.segment else (10.0, 4.0)


def _difference(model, fmt: str, path: Path, with_frontend: bool, seconds: float | None) -> float:
    """Largest |exported - checkpoint| probability on 3 random inputs of ``seconds``."""
    x = _example(model, with_frontend, batch=3, seconds=seconds)
    with torch.no_grad():
        ref = SegmentClassifier(model, with_frontend).eval()(x).numpy()
    return float(np.abs(run_exported(fmt, path, x) - ref).max())


def run_exported(fmt: str, path: Path, x: torch.Tensor) -> np.ndarray:
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path)).eval()(x).detach().numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def export(checkpoint: str, fmt: str, out: Path | None = None) -> dict:
    """Export; check the exported file against the checkpoint on random segments and
    return a report (path, with_frontend, max_abs_diff)."""
    from asc.checkpoints import resolve_checkpoint
    from asc.inference import load

    if fmt not in ("onnx", "torchscript"):
        raise AscError(f"--format {fmt!r}: choose onnx or torchscript")
    path = resolve_checkpoint(checkpoint)  # a path, or a fold's W&B run id: once, for loading and the default out
    model = load(path, "cpu")
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    out = Path(out) if out else path.with_suffix(suffix)
    if out.is_dir():
        raise AscError(f"--out {out} is a folder: name the file to write, e.g. --out {out / ('model' + suffix)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    note = None
    try:
        _export(model, fmt, out, with_frontend=True)
        with_frontend = True
    except Exception as e:  # noqa: BLE001 - fall back to the network alone, and say why
        note = f"front-end not exportable ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        _export(model, fmt, out, with_frontend=False)
        with_frontend = False
    diff = max(_difference(model, fmt, out, with_frontend, seconds) for seconds in _check_lengths(model))
    f = model.cfg.features
    sidecar = {
        "format": fmt, "file": out.name, "classes": model.class_names, "sample_rate": model.sample_rate,
        "input": ("waveform segments (batch, samples), mono float32" if with_frontend else
                  "standardised log spectrogram (batch, bands, frames): log(power + log_eps)"
                  + (", minus each segment's mean over frames per band" if f.get("subtract_clip_mean") else "")
                  + ", minus band_mean, divided by band_std"),
        "segment_samples": model.segment, "output": "class probabilities (batch, classes)",
        "clip_decision": (f"{model.cfg.eval.aggregate} over evenly spaced segments covering the clip"
                          if model.segment else "the whole clip in one input (any length)"),
        "frontend": {"name": f.name, "n_bins": f.n_bins, "win_ms": f.win_ms, "hop_ms": f.hop_ms, "fmin": f.fmin,
                     "fmax": f.fmax, "log_eps": f.log_eps, "subtract_clip_mean": bool(f.get("subtract_clip_mean")),
                     "included": with_frontend,
                     "band_mean": model.norm.mean.tolist(), "band_std": model.norm.std.tolist()},
        "note": note or "front-end, standardisation and network in one graph",
        "max_abs_diff_vs_checkpoint": diff,
    }
    out.with_name(out.name + ".json").write_text(json.dumps(sidecar, indent=1))
    return {"path": str(out), "with_frontend": with_frontend, "max_abs_diff": sidecar["max_abs_diff_vs_checkpoint"],
            "note": sidecar["note"]}
