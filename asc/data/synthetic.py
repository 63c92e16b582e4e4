"""Embedded synthetic acoustic scenes: no download, deterministic for (seed, index).

Each clip is

* a background texture drawn from a pool shared by *all* classes (coloured noise with a
  few resonances and a slow level drift),
* a few short class events that occupy a small part of the time-frequency plane,
* distractor events drawn from one pool for every class (steady tones, noise bursts),
* a random overall gain.

Classes come in pairs whose events are **time reversals of each other** (an upward vs a
downward sweep, a rising vs a falling tone pair, a swell vs a fade, an accelerating vs a
decelerating pip train), all inside the same octave band [f0, 2·f0] with f0 drawn per
event.  A time reversal leaves the multiset of spectrogram frames unchanged, so the
clip-mean spectrum carries no information about which member of a pair a clip belongs
to: a bag-of-frames classifier is capped near 50 % and a model has to find the sparse
events and read how they unfold.

The generator also returns every event's time/frequency box so that attention can be
scored against it.  :func:`write_synthetic` writes the set as WAV files with meta.csv
(``asc synth``), so that the file loaders run on it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CLASS_NAMES = (
    "up_sweep", "down_sweep",        # exponential sweep f0 -> 2 f0, and its reversal
    "rising_pair", "falling_pair",   # tone f0 then 2 f0, and its reversal
    "swell", "fade",                 # noise band [f0, 2 f0] ramping up then cut, and reversal
    "accelerando", "ritardando",     # pip train with shrinking gaps, and its reversal
)

PRESETS = {
    # clip length (s), class events per clip, event level over background (dB), distractors
    "default": dict(clip_seconds=4.0, events_per_clip=3, event_snr_db=6.0, distractors=2),
    "hard": dict(clip_seconds=10.0, events_per_clip=1, event_snr_db=0.0, distractors=4),
}

EVENT_SECONDS = 0.5  # every class event lasts 0.5 s
F0_RANGE_HZ = (400.0, 1400.0)  # lower edge of the event octave, log-uniform
BACKGROUND_POOL = 12  # background textures shared by all classes


@dataclass
class Event:
    onset: float  # s
    offset: float  # s
    fmin: float  # Hz
    fmax: float  # Hz
    kind: str  # "class" or "distractor"
    name: str

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class SyntheticClip:
    wave: np.ndarray  # float32 (n_samples,)
    label: int
    events: list[Event] = field(default_factory=list)


def _ramp(n: int, sr: int, ms: float = 5.0) -> np.ndarray:
    """Raised-cosine fade in/out against clicks at event edges."""
    k = max(1, min(n // 2, int(sr * ms / 1000)))
    env = np.ones(n)
    fade = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
    env[:k] = fade
    env[n - k:] = fade[::-1]
    return env


def _tone(f: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    return np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * _ramp(n, sr)


def _band_noise(lo: float, hi: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[(freqs < lo) | (freqs > hi)] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12) / np.sqrt(2)  # same rms as a unit sine


def _class_event(label: int, f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The event waveform of a class, unit-sine level, EVENT_SECONDS long.

    Odd labels are the time reversal of the even label before them.
    """
    n = int(EVENT_SECONDS * sr)
    t = np.arange(n) / sr
    base = label - label % 2
    if base == 0:  # exponential sweep over one octave
        phase = 2 * np.pi * f0 * EVENT_SECONDS / np.log(2) * (2 ** (t / EVENT_SECONDS) - 1)
        x = np.sin(phase + rng.uniform(0, 2 * np.pi)) * _ramp(n, sr)
    elif base == 2:  # two tones an octave apart with a short gap
        half = int(0.22 * sr)
        x = np.zeros(n)
        x[:half] = _tone(f0, half, sr, rng)
        x[n - half:] = _tone(2 * f0, half, sr, rng)
    elif base == 4:  # noise band that swells linearly, then stops
        x = _band_noise(f0, 2 * f0, n, sr, rng) * np.linspace(0, 1, n) * np.sqrt(3) * _ramp(n, sr)
    else:  # pip train with shrinking gaps, pips at the geometric band centre
        pip = int(0.04 * sr)
        x = np.zeros(n)
        for onset in (0.0, 0.16, 0.28, 0.36, 0.42):
            i = int(onset * sr)
            x[i:i + pip] += _tone(f0 * np.sqrt(2), pip, sr, rng)[: n - i]
        x *= np.sqrt(n / (5 * pip))  # same energy as the other events
    return x[::-1].copy() if label % 2 else x


def _background_shapes(seed: int, sr: int, n_freqs: int) -> np.ndarray:
    """Spectral magnitude envelopes of the shared background pool, (POOL, n_freqs)."""
    rng = np.random.default_rng([seed, 7_000_001])
    freqs = np.linspace(0, sr / 2, n_freqs)
    octaves = np.log2(np.maximum(freqs, 50.0) / 1000.0)
    shapes = []
    for _ in range(BACKGROUND_POOL):
        db = rng.uniform(-6.0, -2.0) * octaves  # spectral tilt, dB per octave around 1 kHz
        for _ in range(3):  # resonances (machinery hum, room modes) shared across classes
            centre, width, height = rng.uniform(-2.5, 2.5), rng.uniform(0.1, 0.5), rng.uniform(3, 12)
            db += height * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
        shapes.append(10 ** (db / 20))
    return np.stack(shapes)


class SyntheticScenes:
    """Deterministic generator of labelled scene clips.

    Parameters
    ----------
    sample_rate : int
        Output rate in Hz.
    n_classes : int
        Number of classes, 2..8 (the first ``n_classes`` of :data:`CLASS_NAMES`).
    clips_per_class : int
        Clips per class; clip ``i`` has label ``i % n_classes``.
    n_folds : int
        Leave-one-fold-out folds; stratified by construction.
    seed : int
        Data seed: the same (seed, index) always gives the same clip.
    preset : str
        ``default`` or ``hard`` (see :data:`PRESETS`); the three following arguments
        override single preset values when not None.
    """

    def __init__(self, sample_rate: int = 16000, n_classes: int = 8, clips_per_class: int = 48,
                 n_folds: int = 4, seed: int = 0, preset: str = "default",
                 clip_seconds: float | None = None, events_per_clip: int | None = None,
                 event_snr_db: float | None = None):
        params = dict(PRESETS[preset])
        for key, value in (("clip_seconds", clip_seconds), ("events_per_clip", events_per_clip),
                           ("event_snr_db", event_snr_db)):
            if value is not None:
                params[key] = value
        self.sample_rate = int(sample_rate)
        self.n_classes = int(n_classes)
        self.class_names = list(CLASS_NAMES[: self.n_classes])
        self.clips_per_class = int(clips_per_class)
        self.n_folds = int(n_folds)
        self.seed = int(seed)
        self.clip_seconds = float(params["clip_seconds"])
        self.events_per_clip = int(params["events_per_clip"])
        self.event_snr_db = float(params["event_snr_db"])
        self.n_distractors = int(params["distractors"])
        self.n_samples = int(round(self.clip_seconds * self.sample_rate))
        if self.clip_seconds < self.events_per_clip * EVENT_SECONDS:
            raise ValueError(f"{self.events_per_clip} events of {EVENT_SECONDS} s do not fit in "
                             f"{self.clip_seconds} s clips")
        self._shapes = _background_shapes(self.seed, self.sample_rate, self.n_samples // 2 + 1)

    def __len__(self) -> int:
        return self.n_classes * self.clips_per_class

    def label(self, index: int) -> int:
        return index % self.n_classes

    def fold(self, index: int) -> int:
        """1-based fold; every fold holds the same number of clips of each class."""
        return (index // self.n_classes) % self.n_folds + 1

    def __getitem__(self, index: int) -> SyntheticClip:
        if not 0 <= index < len(self):
            raise IndexError(index)
        sr, n = self.sample_rate, self.n_samples
        rng = np.random.default_rng([self.seed, index])
        label = self.label(index)

        # background: shared texture, fresh noise, slow level drift, unit rms
        shape = self._shapes[rng.integers(BACKGROUND_POOL)]
        spec = np.fft.rfft(rng.standard_normal(n)) * shape
        bg = np.fft.irfft(spec, n)
        bg *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * np.arange(n) / sr + rng.uniform(0, 6.3))
        x = bg / np.sqrt(np.mean(bg**2))

        events: list[Event] = []
        slot = self.clip_seconds / self.events_per_clip
        for k in range(self.events_per_clip):
            f0 = float(np.exp(rng.uniform(*np.log(F0_RANGE_HZ))))
            onset = k * slot + rng.uniform(0, slot - EVENT_SECONDS)
            level = 10 ** ((self.event_snr_db + rng.uniform(-3, 3)) / 20)
            i = int(onset * sr)
            ev = _class_event(label, f0, sr, rng)[: n - i]
            x[i:i + len(ev)] += level * ev
            events.append(Event(onset, onset + EVENT_SECONDS, f0, 2 * f0, "class", self.class_names[label]))

        for _ in range(self.n_distractors):
            dur = rng.uniform(0.3, 0.8)
            m = int(dur * sr)
            onset = rng.uniform(0, self.clip_seconds - dur)
            level = 10 ** ((self.event_snr_db + rng.uniform(-3, 3)) / 20)
            if rng.random() < 0.5:
                f = float(np.exp(rng.uniform(np.log(300), np.log(3000))))
                ev, lo, hi, name = _tone(f, m, sr, rng), f, f, "tone"
            else:
                lo = float(np.exp(rng.uniform(np.log(300), np.log(2000))))
                hi = lo * rng.uniform(1.5, 3)
                ev, name = _band_noise(lo, hi, m, sr, rng) * _ramp(m, sr), "noise_burst"
            i = int(onset * sr)
            x[i:i + m] += level * ev[: n - i]
            events.append(Event(onset, onset + dur, lo, hi, "distractor", name))

        gain = 0.05 * 10 ** (rng.uniform(-10, 10) / 20)  # random overall level, ±10 dB
        return SyntheticClip((x * gain).astype(np.float32), label, events)


def from_config(data_cfg) -> SyntheticScenes:
    """The generator described by ``data.sample_rate`` and ``data.synthetic.*``."""
    s = data_cfg.synthetic
    return SyntheticScenes(sample_rate=data_cfg.sample_rate, n_classes=s.n_classes,
                           clips_per_class=s.clips_per_class, n_folds=s.n_folds, seed=s.seed, preset=s.preset,
                           clip_seconds=s.clip_seconds, events_per_clip=s.events_per_clip,
                           event_snr_db=s.event_snr_db)


def write_synthetic(data_cfg, out: Path) -> dict:
    """``out/audio/<class>_<index>.wav`` (16-bit PCM) and ``out/meta.csv`` with columns
    filename, label, fold, events (JSON list of event boxes: onset/offset s, fmin/fmax Hz)."""
    import csv
    import json

    import soundfile as sf

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
