"""Front-end throughput: nnAudio Gammatone and mel on the bench's device against a NumPy
reference of the same transform (STFT power through the same filterbank), in audio seconds
per wall second, with the relative error between the two."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from asc.bench.common import CLIP_SECONDS, best_time


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
            t_nn = best_time(partial(layer, x), device)
            nn_out = layer(x[:2]).double().cpu().numpy()
        t_ref = best_time(partial(numpy_power_filterbank, x_np, n_fft, fe.hop, basis), torch.device("cpu"), 1)
        ref = numpy_power_filterbank(x_np[:2].astype(np.float64), n_fft, fe.hop, basis)
        rel = float(np.linalg.norm(nn_out - ref) / np.linalg.norm(ref))
        rows.append({"frontend": name, "device": str(device), "nnaudio_audio_s_per_s": audio_s / t_nn,
                     "numpy_audio_s_per_s": audio_s / t_ref, "speedup": t_ref / t_nn, "relative_error": rel})
    return rows
