"""Between-class (BC) learning and mixup, on the training device.

BC learning (Tokozume, Ushiku & Harada, ICLR 2018) trains on mixtures of two examples of
*different* classes with the mixing ratio as the target.  The mix is
sound-pressure-aware: the louder waveform is turned down so that the perceived ratio of
the two sounds is ``r``; the formulas are in the docstrings of :func:`bc_gain_db` and
:func:`bc_mix`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from asc.registry import AUGMENTATIONS, MIXERS, call_with

MIN_DB = -80.0  # floor of the A-weighting curve and of frame power, dB


def bc_n_fft(sample_rate: int) -> int:
    """Frame length of the gain computation: 2048 at 16 kHz, 4096 at 44.1 kHz, else the
    power of two nearest to 0.1 * sample_rate (ties go to the larger)."""
    target = 0.1 * sample_rate
    lo = 2 ** math.floor(math.log2(target))
    return lo if target - lo < 2 * lo - target else 2 * lo


def a_weighting_db(freqs: torch.Tensor) -> torch.Tensor:
    """A-weighting in dB at ``freqs`` (Hz), floored at -80 dB; f² at DC taken as 1."""
    f2 = freqs.double() ** 2
    f2 = torch.where(f2 == 0, torch.ones_like(f2), f2)
    num = 12194.0**2 * f2**2
    den = (f2 + 20.6**2) * torch.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
    return (2.0 + 20 * torch.log10(num / den)).clamp_min(MIN_DB)


def bc_gain_db(x: torch.Tensor, sample_rate: int, mode: str = "a_weighting") -> torch.Tensor:
    """Gain of each waveform in dB: the maximum over frames of the frame power.

    Parameters
    ----------
    x : Tensor (B, N)
        Waveforms.  Frames are ``bc_n_fft(sample_rate)`` samples with a hop of half that;
        only whole frames count (a waveform shorter than one frame is zero-padded to one).
    sample_rate : int
        Rate of ``x`` in Hz.
    mode : str
        ``a_weighting``: frame power = sum_k |rfft(w x)|_k^2 * 10^(A_k / 10) with w the
        periodic Hann window; ``rms``: frame power = mean(x^2).

    Returns
    -------
    Tensor (B,)
        ``max_frames 10 log10(max(P_frame, 1e-8))``.
    """
    if x.dim() != 2:
        raise ValueError(f"bc_gain_db expects (B, N) waveforms, got shape {tuple(x.shape)}")
    n_fft = bc_n_fft(sample_rate)
    # float32: a gain in dB needs no more (1e-5 dB against a float64 reference), and float64
    # FFTs cost 3x on a CPU and far more on most GPUs
    x = x.float()
    if x.shape[1] < n_fft:
        x = F.pad(x, (0, n_fft - x.shape[1]))
    frames = x.unfold(1, n_fft, n_fft // 2)  # (B, n_frames, n_fft), whole frames only
    if mode == "rms":
        power = frames.pow(2).mean(-1)
    elif mode == "a_weighting":
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float32, device=x.device)
        spec = torch.fft.rfft(frames * window, dim=-1).abs().pow(2)
        freqs = torch.fft.rfftfreq(n_fft, d=1.0 / sample_rate, dtype=torch.float64, device=x.device)
        power = (spec * (10 ** (a_weighting_db(freqs) / 10)).float()).sum(-1)
    else:
        raise ValueError(f"unknown gain mode {mode!r}; use 'a_weighting' or 'rms'")
    floor = 10 ** (MIN_DB / 10)
    return (10 * torch.log10(power.clamp_min(floor))).amax(-1).float()


def bc_mix_ratio(g1: torch.Tensor, g2: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """p = 1 / (1 + 10^((G1 - G2)/20) (1 - r) / r), written as r / (r + 10^(..)(1 - r))
    so that r = 0 and r = 1 give exactly 0 and 1."""
    return r / (r + 10 ** ((g1 - g2) / 20) * (1 - r))


def _mix(x1: torch.Tensor, x2: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    shape = (-1,) + (1,) * (x1.dim() - 1)
    p = p.reshape(shape).to(x1.dtype)
    return (p * x1 + (1 - p) * x2) / torch.sqrt(p**2 + (1 - p) ** 2)


def bc_mix(x1: torch.Tensor, x2: torch.Tensor, r: torch.Tensor, sample_rate: int,
           mode: str = "a_weighting") -> torch.Tensor:
    """Sound-pressure-aware BC mix of two (B, N) waveform batches with ratios r (B,)."""
    g1, g2 = bc_gain_db(x1, sample_rate, mode), bc_gain_db(x2, sample_rate, mode)
    return _mix(x1, x2, bc_mix_ratio(g1, g2, r.to(g1.dtype)))


def bc_mix_spectrogram(s1: torch.Tensor, s2: torch.Tensor, r: torch.Tensor,
                       valid1: torch.Tensor | None = None, valid2: torch.Tensor | None = None) -> torch.Tensor:
    """BC mix of standardised spectrograms (B, F, T): the std-ratio form
    p = 1 / (1 + (sigma1 / sigma2) (1 - r) / r) of the same formula, on each row's
    deviations from its mean (BC+: the 1 / sqrt(p^2 + (1 - p)^2) rescaling assumes zero-mean
    inputs, and would otherwise scale a log spectrogram's level), the means mixed back as
    p mu1 + (1 - p) mu2.  Each side's mean and std are over its own frames (``valid1``,
    ``valid2`` (B, T), None: all), so neither clip's padding changes p."""

    def moments(s: torch.Tensor, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        w = s.new_ones(len(s), 1, s.shape[-1]) if valid is None else valid[:, None, :].to(s.dtype)
        count = (w.sum((1, 2)) * s.shape[1]).clamp_min(2)
        mean = (s * w).sum((1, 2)) / count
        var = ((s - mean[:, None, None]) ** 2 * w).sum((1, 2)) / (count - 1)
        return mean, var.sqrt().clamp_min(1e-8)

    (mu1, sd1), (mu2, sd2) = moments(s1, valid1), moments(s2, valid2)
    p = r / (r + sd1 / sd2 * (1 - r))
    centred = _mix(s1 - mu1[:, None, None], s2 - mu2[:, None, None], p)
    return centred + (p * mu1 + (1 - p) * mu2)[:, None, None].to(s1.dtype)


def draw_partners(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each example, the index of a partner with a *different* label, drawn uniformly.

    If every example in the batch has the same label, partners are drawn uniformly (the
    mixed target is then still exact, just not between-class).
    """
    different = (labels[:, None] != labels[None, :]).float()
    different = different + (different.sum(1, keepdim=True) == 0).float()  # none: any partner
    # The argmax of weight / Exp(1) noise is a draw proportional to the weights (here uniform
    # over the allowed partners).  Unlike torch.multinomial, whose input checks (and a
    # boolean-mask assignment) wait for the GPU, it keeps the training step free of host
    # syncs, so the host can queue the next batch while the device works.
    noise = torch.empty_like(different).exponential_(generator=generator)
    return (different / noise).argmax(1)


# Mixers (asc.registry.MIXERS): a function of the waveform batch (B, N), its labels (B,),
# one-hot targets (B, C) and those of sample_rate, gain, mixup_alpha it needs, returning
# (wave, soft targets (B, C), partners (B,) or None, ratios (B,) or None).  Registered with
# spectrogram=f, f(spec, spec[partners], ratios, valid, valid[partners]) also mixes the spectrograms after
# the front-end (valid: each row's own frame mask before the mix, or None).

@MIXERS.register("none")
def no_mix(wave, onehot):
    return wave, onehot, None, None


def _bc_draw(labels, onehot, wave):
    partners = draw_partners(labels)
    r = torch.rand(len(labels), device=wave.device)
    return partners, r, r[:, None] * onehot + (1 - r[:, None]) * onehot[partners]


@MIXERS.register("bc")
def bc(wave, labels, onehot, sample_rate, gain):
    partners, r, targets = _bc_draw(labels, onehot, wave)
    g = bc_gain_db(wave, sample_rate, gain)  # once per clip: a partner's gain is its own clip's
    return _mix(wave, wave[partners], bc_mix_ratio(g, g[partners], r.to(g.dtype))), targets, partners, r


@MIXERS.register("bc_spec", spectrogram=bc_mix_spectrogram)
def bc_spec(wave, labels, onehot):
    partners, r, targets = _bc_draw(labels, onehot, wave)
    return wave, targets, partners, r


@MIXERS.register("mixup")
def mixup(wave, labels, onehot, mixup_alpha):
    partners = torch.randperm(len(labels), device=labels.device)
    lam = torch.distributions.Beta(mixup_alpha, mixup_alpha).sample((len(labels),)).to(wave.device)
    lam_ = lam.reshape(-1, *([1] * (wave.dim() - 1)))
    mixed = lam_ * wave + (1 - lam_) * wave[partners]
    return mixed, lam[:, None] * onehot + (1 - lam[:, None]) * onehot[partners], partners, lam


def mix_batch(wave: torch.Tensor, labels: torch.Tensor, n_classes: int, mode: str,
              sample_rate: int, gain: str = "a_weighting", mixup_alpha: float = 0.4):
    """Mix a training batch of waveforms with the mixer registered as ``mode``.  Returns
    (wave, soft targets (B, C), partners, r).

    ``bc`` mixes waveforms here; ``bc_spec`` only draws partners and ratios (the
    spectrogram mix happens after the front-end, :func:`mix_spectrogram`); ``mixup`` mixes
    linearly with a Beta(alpha, alpha) ratio and random partners; ``none`` returns one-hot
    targets.
    """
    onehot = F.one_hot(labels, n_classes).float()
    return call_with(MIXERS.get(mode), wave=wave, labels=labels, onehot=onehot, sample_rate=sample_rate,
                     gain=gain, mixup_alpha=mixup_alpha)


def mix_spectrogram(mode: str, spec: torch.Tensor, partners, r, own_valid: torch.Tensor | None = None) -> torch.Tensor:
    """The after-front-end part of the mixer ``mode`` (``bc_spec``), else ``spec`` as is;
    ``own_valid`` (B, T): each row's own frames before the mix (None: no padding)."""
    mix = MIXERS.meta(mode).get("spectrogram")
    if mix is None or partners is None:
        return spec
    return mix(spec, spec[partners], r, own_valid, None if own_valid is None else own_valid[partners])


def soft_target_kl(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """KL(t || softmax(logits)), averaged over the batch."""
    return F.kl_div(F.log_softmax(logits.float(), dim=-1), targets, reduction="batchmean")


# ---------------------------------------------------------------- augmentation stages
# Each stage runs on the training device on one batch, only while fitting, when its
# ``enabled(cfg.augment)`` is true.  ``domain="wave"`` stages come before the mix, on the
# waveforms (B, N); ``domain="spec"`` stages after standardisation (0 = band mean), on
# (B, F, T).  A stage is called (asc.registry.call_with) with those of ``wave`` or ``spec``,
# ``valid`` (frame mask or None), ``lengths``, ``sample_rate``, ``hop`` and the augment.*
# keys that its signature names, and returns the new batch; stages run in registration
# order (the mix is the stage between the two domains: MIXERS).

@AUGMENTATIONS.register("gain", domain="wave", enabled=lambda a: a.gain_db > 0)
def random_gain(wave: torch.Tensor, gain_db: float) -> torch.Tensor:
    """Each row scaled by a gain drawn uniformly in [-gain_db, +gain_db] dB."""
    db = (torch.rand(len(wave), device=wave.device) * 2 - 1) * gain_db
    return wave * (10 ** (db / 20)).to(wave.dtype)[:, None]


@AUGMENTATIONS.register("roll", domain="spec", enabled=lambda a: a.roll)
def roll_frames(spec: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Circular roll of each example's valid frames by a random offset (padding stays in
    place), so an event can be anywhere in the clip: (B, F, T) -> (B, F, T)."""
    b, _, t = spec.shape
    n_valid = valid.sum(1) if valid is not None else torch.full((b,), t, device=spec.device)
    shift = (torch.rand(b, device=spec.device) * n_valid).long()
    pos = torch.arange(t, device=spec.device)[None, :]
    src = torch.where(pos < n_valid[:, None], (pos - shift[:, None]) % n_valid[:, None].clamp_min(1), pos)
    return spec.gather(2, src[:, None, :].expand_as(spec))


def _stripe_mask(n: int, size: int, n_stripes: int, max_width: int, limit: torch.Tensor, device) -> torch.Tensor:
    """(n, size) bool: ``n_stripes`` stripes per row of width U{0..max_width} (at most
    limit_row), lying inside [0, limit_row)."""
    pos = torch.arange(size, device=device)[None, :]
    out = torch.zeros(n, size, dtype=torch.bool, device=device)
    for _ in range(n_stripes):
        width = torch.minimum((torch.rand(n, device=device) * (max_width + 1)).long(), limit.long())
        start = (torch.rand(n, device=device) * (limit - width + 1).clamp_min(1)).long()
        out |= (pos >= start[:, None]) & (pos < (start + width)[:, None])
    return out


def spec_mask(spec: torch.Tensor, valid: torch.Tensor | None, freq_masks: int, freq_width: int,
              time_masks: int, time_width: int) -> torch.Tensor:
    """SpecAugment-style masking (Park et al. 2019) of a standardised (B, F, T) batch:
    bands and frames set to 0, the band mean; time stripes fall inside the valid frames."""
    b, f, t = spec.shape
    dev = spec.device
    keep = torch.ones(b, f, t, dtype=torch.bool, device=dev)
    if freq_masks:
        keep &= ~_stripe_mask(b, f, freq_masks, freq_width, torch.full((b,), f, device=dev), dev)[:, :, None]
    if time_masks:
        n_valid = valid.sum(1) if valid is not None else torch.full((b,), t, device=dev)
        keep &= ~_stripe_mask(b, t, time_masks, time_width, n_valid, dev)[:, None, :]
    return spec * keep.to(spec.dtype)


@AUGMENTATIONS.register("spec_mask", domain="spec", enabled=lambda a: a.freq_masks > 0 or a.time_masks > 0)
def spec_mask_stage(spec: torch.Tensor, valid: torch.Tensor | None, freq_masks: int, freq_mask_bins: int,
                    time_masks: int, time_mask_seconds: float, sample_rate: int, hop: int) -> torch.Tensor:
    """:func:`spec_mask` with the time stripes' width given in seconds."""
    time_width = max(1, round(time_mask_seconds * sample_rate / hop))
    return spec_mask(spec, valid, freq_masks, freq_mask_bins, time_masks, time_width)
