"""Time-frequency front-ends (nnAudio), log compression and per-band standardisation.

Everything here is an ``nn.Module`` that runs on whatever device the waveform batch is
on, always in float32 with autocast off: spectrogram front-ends lose precision (and
sometimes produce inf) under bf16/fp16.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn

from asc.registry import FRONTENDS, call_with


@contextmanager
def float32_region(device: torch.device):
    """Disable autocast for the enclosed code on ``device``."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def frame_params(sample_rate: int, win_ms: float, hop_ms: float) -> tuple[int, int]:
    """Window and hop in samples (e.g. 640 and 320 for 40/20 ms at 16 kHz)."""
    return int(round(sample_rate * win_ms / 1000)), int(round(sample_rate * hop_ms / 1000))


def n_frames(n_samples, hop: int, win: int):
    """Frames a centred front-end produces for ``n_samples`` (an int or a tensor): nnAudio
    pads win // 2 samples on each side, so (n + 2 (win // 2) - win) // hop + 1, which is
    n // hop + 1 for an even window and (n - 1) // hop + 1 for an odd one."""
    return (n_samples + 2 * (win // 2) - win) // hop + 1


def configured_frames(features_cfg, sample_rate: int, n_samples: int) -> int:
    """:func:`n_frames` of ``n_samples`` through the front-end the ``features`` config
    describes, without building it."""
    win, hop = frame_params(sample_rate, features_cfg.win_ms, features_cfg.hop_ms)
    return n_frames(n_samples, hop, framing_window(features_cfg.name, win))


def framing_window(name: str, win: int) -> int:
    """The window whose centre padding sets front-end ``name``'s frame count (the ``win`` of
    :func:`n_frames`): ``win``, or 0 for a front-end registered with ``own_kernel=True``
    (``cqt``: nnAudio pads its power-of-two kernels, so n // hop + 1 frames whatever ``win``)."""
    return 0 if FRONTENDS.meta(name).get("own_kernel") else win


def frame_mask(lengths: torch.Tensor | None, hop: int, n_total: int, win: int) -> torch.Tensor | None:
    """(B, n_total) bool: True for the frames that each clip's first ``lengths`` samples
    give on their own (frame t is centred on sample t * hop; :func:`n_frames`), False for
    padding; None when ``lengths`` is None (every frame valid).  Every clip keeps at least
    one frame."""
    if lengths is None:
        return None
    n_valid = n_frames(lengths, hop, win).clamp(1, n_total)
    return torch.arange(n_total, device=lengths.device)[None, :] < n_valid[:, None]


def padding_mask(lengths: torch.Tensor | None, hop: int, n_total: int, win: int) -> torch.Tensor | None:
    """:func:`frame_mask`, or None when no row is padded (the models' fast path)."""
    valid = frame_mask(lengths, hop, n_total, win)
    return None if valid is None or bool(valid.all()) else valid


# Front-ends (asc.registry.FRONTENDS): a function of those of sample_rate, n_bins, win, hop
# (samples), fmin, fmax (Hz) it needs, returning an nn.Module waveform (B, N) -> power
# (B, n_bins, T) (or magnitude, registered with magnitude=True), frames centred on multiples of
# hop with win // 2 samples of padding at each end (n_frames; own_kernel=True: even kernels of
# its own, whatever win).

@FRONTENDS.register("gammatone")
def gammatone(sample_rate, n_bins, win, hop, fmin, fmax):
    import nnAudio.features as F

    # power=2 weights the power spectrum; htk/norm are ignored by nnAudio, so not passed
    return F.Gammatonegram(sr=sample_rate, n_fft=win, n_bins=n_bins, hop_length=hop, fmin=fmin, fmax=fmax,
                           power=2.0, verbose=False)


@FRONTENDS.register("mel")
def mel(sample_rate, n_bins, win, hop, fmin, fmax):
    import nnAudio.features as F

    return F.MelSpectrogram(sr=sample_rate, n_fft=win, n_mels=n_bins, hop_length=hop, fmin=fmin, fmax=fmax,
                            power=2.0, verbose=False)


@FRONTENDS.register("stft", magnitude=True)
def stft(sample_rate, n_bins, win, hop, fmin, fmax):
    import nnAudio.features as F

    return F.STFT(n_fft=win, hop_length=hop, freq_bins=n_bins, freq_scale="linear", fmin=fmin, fmax=fmax,
                  sr=sample_rate, output_format="Magnitude", verbose=False)


@FRONTENDS.register("cqt", magnitude=True, own_kernel=True)
def cqt(sample_rate, n_bins, hop, fmin, fmax):
    import nnAudio.features as F

    bins_per_octave = math.ceil(n_bins / math.log2(fmax / max(fmin, 1.0)))
    return F.CQT1992v2(sr=sample_rate, hop_length=hop, fmin=max(fmin, 1.0), n_bins=n_bins,
                       bins_per_octave=bins_per_octave, output_format="Magnitude", verbose=False)


class LogSpectrogram(nn.Module):
    """Waveform (B, N) -> log time-frequency image (B, n_bins, T).

    Parameters
    ----------
    name : str
        ``gammatone`` (nnAudio ``Gammatonegram``), ``mel``, ``stft`` (linear-frequency
        STFT bins between ``fmin`` and ``fmax``) or ``cqt`` (nnAudio ``CQT1992v2``).
    sample_rate : int
        Input rate in Hz.
    n_bins : int
        Frequency bands.
    win_ms, hop_ms : float
        Analysis window and hop in milliseconds.
    fmin, fmax : float
        Band edges in Hz (``fmax=None``: Nyquist).  Set ``fmin`` explicitly: nnAudio's
        Gammatone default of 0 Hz puts the lowest band at DC.
    log_eps : float
        Floor of ``log(power + eps)``.
    """

    def __init__(self, name: str = "gammatone", sample_rate: int = 16000, n_bins: int = 64,
                 win_ms: float = 40.0, hop_ms: float = 20.0, fmin: float = 50.0,
                 fmax: float | None = None, log_eps: float = 1e-6):
        super().__init__()
        self.name, self.sample_rate, self.n_bins, self.log_eps = name, sample_rate, n_bins, log_eps
        win, hop = frame_params(sample_rate, win_ms, hop_ms)
        self.win, self.hop = win, hop
        self.frame_win = framing_window(name, win)  # for n_frames
        fmax = float(fmax or sample_rate / 2)
        if not 0 <= fmin < fmax <= sample_rate / 2:
            raise ValueError(f"need 0 <= fmin ({fmin}) < fmax ({fmax}) <= sample_rate/2 ({sample_rate / 2})")
        make = FRONTENDS.get(name)  # AscError naming the registered front-ends
        self.layer = call_with(make, sample_rate=sample_rate, n_bins=n_bins, win=win, hop=hop, fmin=fmin, fmax=fmax)
        # a front-end registered with magnitude=True returns magnitudes: squared, so every front-end yields power
        self.square = bool(FRONTENDS.meta(name).get("magnitude"))

    @classmethod
    def from_config(cls, features_cfg, sample_rate: int) -> LogSpectrogram:
        """The front-end a ``features`` config section describes, at ``sample_rate`` Hz."""
        f = features_cfg
        return cls(f.name, int(sample_rate), f.n_bins, f.win_ms, f.hop_ms, f.fmin, f.fmax, f.log_eps)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.shape[-1] < self.win:  # centred framing reflects win/2 samples: needs a longer input
            wave = torch.nn.functional.pad(wave, (0, self.win - wave.shape[-1]))
        with float32_region(wave.device):
            spec = self.layer(wave.float())
            if self.square:
                spec = spec.pow(2)
            return torch.log(spec.clamp_min(0) + self.log_eps)


def subtract_clip_mean(logspec: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(B, F, T) log spectrogram minus each clip's per-band mean over its valid frames
    ``valid`` (B, T) (all frames when None): a constant gain and a steady background
    spectrum are removed, what changes over time is kept."""
    if valid is None:
        return logspec - logspec.mean(-1, keepdim=True)
    w = valid.unsqueeze(1).to(logspec.dtype)
    return logspec - (logspec * w).sum(-1, keepdim=True) / w.sum(-1, keepdim=True).clamp_min(1)


class BandStandardizer(nn.Module):
    """Per-band standardisation with statistics accumulated from training data only.

    Call :meth:`update` with log spectrograms of the training split, then
    :meth:`finalize`; the mean and std are buffers, so they travel in checkpoints.
    """

    def __init__(self, n_bins: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_bins))
        self.register_buffer("std", torch.ones(n_bins))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._acc: list[torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, logspec: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Accumulate statistics from a (B, F, T) batch (float64 sums), over the frames
        ``valid`` (B, T) marks (padding never enters the statistics)."""
        x = logspec.double().transpose(0, 1).reshape(logspec.shape[1], -1)
        if valid is not None:
            x = x[:, valid.reshape(-1)]
        part = [x.sum(1), (x * x).sum(1), torch.tensor(float(x.shape[1]), dtype=torch.float64, device=x.device)]
        self._acc = part if self._acc is None else [a + b for a, b in zip(self._acc, part)]

    @torch.no_grad()
    def finalize(self, reduce: Callable[[torch.Tensor], None] | None = None) -> None:
        """Mean and std from the accumulated sums.  ``reduce`` sums a tensor in place across
        processes (``torch.distributed.all_reduce``): each DDP rank accumulates its share of
        the training clips and every rank ends with the statistics of all of them."""
        if self._acc is None and reduce is None:
            raise RuntimeError("BandStandardizer.finalize() called before any update()")
        n_bins = len(self.mean)
        if self._acc is None:  # this rank's share was empty: it still takes part in the sum
            self._acc = [torch.zeros(n_bins, dtype=torch.float64, device=self.mean.device)] * 2 + [
                torch.zeros((), dtype=torch.float64, device=self.mean.device)]
        if reduce is not None:
            flat = torch.cat([self._acc[0], self._acc[1], self._acc[2].reshape(1)])
            reduce(flat)
            self._acc = [flat[:n_bins], flat[n_bins:2 * n_bins], flat[-1]]
        s, ss, n = self._acc
        if float(n) == 0:
            raise RuntimeError("BandStandardizer.finalize(): no frames were accumulated")
        mean = s / n
        var = (ss / n - mean * mean).clamp_min(1e-10)
        self.mean.copy_(mean.float())
        self.std.copy_(var.sqrt().float())
        self.fitted.fill_(True)
        self._acc = None

    def forward(self, logspec: torch.Tensor) -> torch.Tensor:
        return (logspec - self.mean[:, None]) / self.std[:, None]
