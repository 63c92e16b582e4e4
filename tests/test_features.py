import numpy as np
import pytest
import torch

from asc.features import BandStandardizer, LogSpectrogram, n_frames


@pytest.mark.parametrize("name", ["gammatone", "mel", "stft", "cqt"])
def test_front_ends_on_cpu(name):
    fe = LogSpectrogram(name, sample_rate=16000, n_bins=64)
    wave = torch.randn(2, 16000) * 0.1
    spec = fe(wave)
    assert spec.shape == (2, 64, n_frames(16000, 320, 640)) == (2, 64, 51)
    assert spec.dtype == torch.float32 and torch.isfinite(spec).all()


@pytest.mark.parametrize("name", ["gammatone", "mel", "stft", "cqt"])
@pytest.mark.parametrize("win_ms", [25.0, 40.0])  # 551 (odd) and 882 samples at 22.05 kHz
def test_frame_count_for_odd_and_even_windows(name, win_ms):
    fe = LogSpectrogram(name, sample_rate=22050, n_bins=32, win_ms=win_ms, hop_ms=10.0)
    for n in (2200, 2201, 2419):  # a multiple of the hop (220), one more, one less than the next
        assert fe(torch.zeros(1, n)).shape[-1] == n_frames(n, fe.hop, fe.frame_win), (fe.win, n)


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


def test_subtract_clip_mean_removes_a_per_clip_level_and_ignores_padding():
    from asc.features import subtract_clip_mean

    rng = torch.Generator().manual_seed(0)
    spec = torch.randn(2, 4, 10, generator=rng)
    shifted = spec + torch.tensor([3.0, -7.0])[:, None, None]  # a different gain per clip
    torch.testing.assert_close(subtract_clip_mean(shifted), subtract_clip_mean(spec))
    assert subtract_clip_mean(spec).mean(-1).abs().max() < 1e-6
    valid = torch.arange(10)[None] < torch.tensor([10, 6])[:, None]
    padded = spec.clone()
    padded[1, :, 6:] = -100.0  # padding must not pull the second clip's mean down
    out = subtract_clip_mean(padded, valid)
    torch.testing.assert_close(out[1, :, :6], subtract_clip_mean(spec[1:, :, :6])[0])
    torch.testing.assert_close(out[0], subtract_clip_mean(spec)[0])


@pytest.mark.parametrize("on", [True, False])
def test_clip_mean_pipeline_features_do_not_depend_on_the_clip_level(on):
    """With features.subtract_clip_mean a clip 20 dB louder gives the same features
    (padded in a batch or alone); without it they differ (the control)."""
    from asc.config import load_config
    from asc.pipeline import FeaturePipeline

    cfg = load_config(overrides=["features.n_bins=16", f"features.subtract_clip_mean={str(on).lower()}"])
    pipeline = FeaturePipeline(cfg, n_classes=2)
    wave = 0.05 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([16000, 8000])
    wave[1, 8000:] = 0.0
    pipeline.fit([{"wave": wave, "length": lengths}], torch.device("cpu"))
    quiet = pipeline.features(wave, lengths)
    loud = pipeline.features(10 * wave, lengths)
    alone = pipeline.features(wave[1:, :8000])
    n = alone.shape[-1] - 1  # the second clip's frames clear of its padding
    diff = max((loud[0] - quiet[0]).abs().max(), (loud[1, :, :n] - quiet[1, :, :n]).abs().max())
    if on:
        assert diff < 0.02  # not 0: the log floor (log_eps) is not scaled with the clip
        # the last valid frame straddles the padding (zeros in the batch, reflection alone)
        # and moves the mean by 1/26 of its difference; 25 padding frames in the mean would
        # move it by several units
        torch.testing.assert_close(quiet[1, :, :n], alone[0, :, :n], atol=0.25, rtol=0)
    else:
        assert diff > 1.0
