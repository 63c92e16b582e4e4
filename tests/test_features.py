import numpy as np
import pytest
import torch

from asc.features import BandStandardizer, LogSpectrogram, n_frames


@pytest.mark.parametrize("name", ["gammatone", "mel", "stft", "cqt"])
def test_front_ends_on_cpu(name):
    fe = LogSpectrogram(name, sample_rate=16000, n_bins=64)
    wave = torch.randn(2, 16000) * 0.1
    spec = fe(wave)
    assert spec.shape == (2, 64, n_frames(16000, 320)) == (2, 64, 51)
    assert spec.dtype == torch.float32 and torch.isfinite(spec).all()


def test_gammatone_peaks_at_the_tone_band():
    fe = LogSpectrogram("gammatone", 16000, 64, fmin=50)
    t = torch.arange(16000) / 16000
    low = fe(torch.sin(2 * torch.pi * 300 * t)[None])[0].mean(-1).argmax()
    high = fe(torch.sin(2 * torch.pi * 3000 * t)[None])[0].mean(-1).argmax()
    assert high > low + 10


def test_float32_under_autocast():
    fe = LogSpectrogram("gammatone", 16000, 64)
    wave = torch.randn(1, 8000)
    ref = fe(wave)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fe(wave.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, fe(wave.bfloat16().float()))
    assert (out - ref).abs().max() < 0.5


def test_silence_is_finite():
    assert torch.isfinite(LogSpectrogram()(torch.zeros(1, 8000))).all()


def test_standardizer_uses_what_it_was_fed():
    norm = BandStandardizer(3)
    rng = np.random.default_rng(0)
    data = torch.tensor(rng.normal([1.0, -2.0, 5.0], [0.5, 2.0, 1.0], size=(4, 1000, 3)), dtype=torch.float32)
    for chunk in data.transpose(1, 2):  # (F, T) chunks
        norm.update(chunk[None])
    norm.finalize()
    assert bool(norm.fitted)
    z = norm(data.transpose(1, 2))
    torch.testing.assert_close(z.mean((0, 2)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std((0, 2)), torch.ones(3), atol=1e-3, rtol=0)
    assert set(dict(norm.named_buffers())) == {"mean", "std", "fitted"}  # saved in checkpoints
