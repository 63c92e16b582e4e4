"""BC learning against an independent NumPy computation of the formulas in asc/augment.py."""

import numpy as np
import pytest
import torch

from asc.augment import (
    a_weighting_db,
    bc_gain_db,
    bc_mix,
    bc_mix_spectrogram,
    bc_n_fft,
    draw_partners,
    mix_batch,
    soft_target_kl,
)


def np_a_weight(freqs):
    f2 = np.asarray(freqs, dtype=np.float64) ** 2
    f2[f2 == 0] = 1.0
    a = 2.0 + 20 * np.log10(12194**2 * f2**2 / ((f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2))
                                                 * (f2 + 12194**2)))
    return np.maximum(a, -80.0)


def np_gain(x, sr, n_fft, mode="a_weighting"):
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    aw = np_a_weight(np.fft.rfftfreq(n_fft, 1 / sr))
    gains = []
    for i in range(0, len(x) - n_fft + 1, n_fft // 2):
        frame = x[i:i + n_fft]
        if mode == "rms":
            p = np.mean(frame**2)
        else:
            p = np.sum(np.abs(np.fft.rfft(window * frame)) ** 2 * 10 ** (aw / 10))
        gains.append(10 * np.log10(max(p, 1e-8)))
    return max(gains)


def np_mix(x1, x2, r, sr, n_fft):
    g1, g2 = np_gain(x1, sr, n_fft), np_gain(x2, sr, n_fft)
    p = 1.0 / (1 + 10 ** ((g1 - g2) / 20) * (1 - r) / r)
    return (p * x1 + (1 - p) * x2) / np.sqrt(p**2 + (1 - p) ** 2)


def test_n_fft_rule():
    assert bc_n_fft(16000) == 2048 and bc_n_fft(44100) == 4096
    assert bc_n_fft(22050) == 2048 and bc_n_fft(8000) == 1024 and bc_n_fft(48000) == 4096


def test_a_weighting_curve():
    f = np.array([0.0, 100.0, 1000.0, 10000.0])
    np.testing.assert_allclose(a_weighting_db(torch.tensor(f)).numpy(), np_a_weight(f), atol=1e-9)
    assert abs(float(a_weighting_db(torch.tensor([1000.0]))[0])) < 0.01  # 0 dB at 1 kHz by definition
    assert float(a_weighting_db(torch.tensor([0.0]))[0]) == -80.0


@pytest.mark.parametrize("sr", [16000, 22050, 44100])
@pytest.mark.parametrize("mode", ["a_weighting", "rms"])
def test_gain_matches_numpy(sr, mode):
    rng = np.random.default_rng(sr)
    x = rng.standard_normal((3, sr // 2)) * np.array([[0.5], [0.01], [0.1]])
    x[2, : sr // 4] = 0  # a silent stretch
    got = bc_gain_db(torch.tensor(x, dtype=torch.float32), sr, mode).numpy()
    want = [np_gain(row.astype(np.float32).astype(np.float64), sr, bc_n_fft(sr), mode) for row in x]
    np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("k", [0.1, 2.0, 10.0])
def test_gain_scaling(k):
    x = torch.randn(2, 16000) * 0.1
    diff = bc_gain_db(k * x, 16000) - bc_gain_db(x, 16000)
    torch.testing.assert_close(diff, torch.full((2,), 20 * np.log10(k), dtype=torch.float32), atol=1e-3, rtol=0)


def test_gain_of_silence_is_the_floor():
    assert float(bc_gain_db(torch.zeros(1, 8000), 16000)[0]) == pytest.approx(-80.0)


def test_mix_matches_numpy():
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((4, 8000)) * 0.3
    x2 = rng.standard_normal((4, 8000)) * 0.02
    r = np.array([0.1, 0.3, 0.5, 0.9])
    got = bc_mix(torch.tensor(x1), torch.tensor(x2), torch.tensor(r), 16000).numpy()
    want = np.stack([np_mix(a, b, ri, 16000, 2048) for a, b, ri in zip(x1, x2, r)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_mix_ratio_extremes_and_equal_gains():
    x1, x2 = torch.randn(1, 4096), torch.randn(1, 4096)
    torch.testing.assert_close(bc_mix(x1, x2, torch.tensor([1.0]), 16000), x1)
    torch.testing.assert_close(bc_mix(x1, x2, torch.tensor([0.0]), 16000), x2)
    # equal gains: p = r exactly
    m = bc_mix(x1, x1 * 1.0, torch.tensor([0.3]), 16000)
    torch.testing.assert_close(m, x1 * (0.3 + 0.7) / np.sqrt(0.3**2 + 0.7**2))


def test_spectrogram_mix_uses_std_ratio_on_centred_rows():
    """BC+: p from the std ratio; the deviations from each row's mean mixed and rescaled,
    the means mixed linearly (a mix of two clips at mean -2 stays at -2, not -2.8)."""
    s1, s2 = torch.randn(2, 4, 5) * 2 - 2, torch.randn(2, 4, 5) - 2
    r = torch.tensor([0.5, 0.3])
    sd1, sd2 = s1.flatten(1).std(1), s2.flatten(1).std(1)
    mu1, mu2 = s1.mean((1, 2), keepdim=True), s2.mean((1, 2), keepdim=True)
    p = (1 / (1 + sd1 / sd2 * (1 - r) / r))[:, None, None]
    want = (p * (s1 - mu1) + (1 - p) * (s2 - mu2)) / torch.sqrt(p**2 + (1 - p) ** 2) + p * mu1 + (1 - p) * mu2
    mixed = bc_mix_spectrogram(s1, s2, r)
    torch.testing.assert_close(mixed, want)
    torch.testing.assert_close(mixed.mean((1, 2), keepdim=True), p * mu1 + (1 - p) * mu2)


def test_spectrogram_mix_ignores_padding():
    """A clip of 40 frames mixed with one of 10 padded to 40: the partner's mean and std
    come from its own 10 frames, so its padding value does not change the mix where both
    clips have sound, and p is what the two clips alone give."""
    s1, s2, r = torch.randn(1, 4, 40), torch.randn(1, 4, 10) * 3, torch.tensor([0.4])
    valid1, valid2 = torch.ones(1, 40, dtype=torch.bool), torch.tensor([[True] * 10 + [False] * 30])
    mixes = [bc_mix_spectrogram(s1, torch.cat([s2, torch.full((1, 4, 30), v)], -1), r, valid1, valid2)
             for v in (-6.0, -10.0)]
    torch.testing.assert_close(mixes[0][..., :10], mixes[1][..., :10])
    sd1, sd2 = s1.flatten(1).std(1), s2.flatten(1).std(1)
    p = (1 / (1 + sd1 / sd2 * (1 - r) / r))[:, None, None]
    mu1, mu2 = s1.mean((1, 2), keepdim=True), s2.mean((1, 2), keepdim=True)
    want = (p * (s1[..., :10] - mu1) + (1 - p) * (s2 - mu2)) / torch.sqrt(p**2 + (1 - p) ** 2) + p * mu1 + (1 - p) * mu2
    torch.testing.assert_close(mixes[0][..., :10], want)


def test_partners_have_different_labels():
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 3, 1] * 4)
    for _ in range(20):
        p = draw_partners(labels)
        assert (labels[p] != labels).all()
    same = torch.zeros(5, dtype=torch.long)  # no different-label partner exists
    assert draw_partners(same).shape == (5,)
    assert len(set(torch.cat([draw_partners(same) for _ in range(50)]).tolist())) == 5  # any clip then
    # uniform over the allowed partners: clip 0's partner among clips 1-3, 6000 draws
    labels = torch.tensor([0, 1, 1, 2, 0])
    counts = torch.bincount(torch.stack([draw_partners(labels)[0] for _ in range(6000)]), minlength=5)
    assert counts[0] == counts[4] == 0 and ((counts[1:4] - 2000).abs() < 200).all(), counts


def test_mixed_batch_targets():
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    wave = torch.randn(6, 4000) * 0.1
    mixed, targets, partners, r = mix_batch(wave, labels, 4, "bc", 16000)
    assert mixed.shape == wave.shape and torch.isfinite(mixed).all()
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    rows = torch.arange(6)
    torch.testing.assert_close(targets[rows, labels], r)
    torch.testing.assert_close(targets[rows, labels[partners]], 1 - r)
    assert ((r > 0) & (r < 1)).all()
    _, onehot, _, _ = mix_batch(wave, labels, 4, "none", 16000)
    torch.testing.assert_close(onehot, torch.nn.functional.one_hot(labels, 4).float())
    mixed, targets, _, lam = mix_batch(wave, labels, 4, "mixup", 16000)
    torch.testing.assert_close(targets.sum(1), torch.ones(6))


def test_kl_loss():
    logits = torch.randn(4, 5)
    t = torch.softmax(torch.randn(4, 5), -1)
    q = torch.log_softmax(logits, -1)
    want = (t * (torch.log(t) - q)).sum(1).mean()
    torch.testing.assert_close(soft_target_kl(logits, t), want)
    assert float(soft_target_kl(logits, torch.softmax(logits, -1))) == pytest.approx(0.0, abs=1e-6)
    # same gradient as soft-target cross-entropy
    l1 = logits.clone().requires_grad_()
    soft_target_kl(l1, t).backward()
    l2 = logits.clone().requires_grad_()
    (-(t * torch.log_softmax(l2, -1)).sum(1).mean()).backward()
    torch.testing.assert_close(l1.grad, l2.grad)


def test_bc_mixer_equals_bc_mix_of_the_drawn_partners():
    """The mixer computes each clip's gain once and reuses it for the clips that pick it as
    a partner: the same mix as bc_mix of the batch and its partners."""
    wave = 0.05 * torch.randn(8, 16000, generator=torch.Generator().manual_seed(0))
    wave *= torch.logspace(-2, 0.5, 8)[:, None]  # gains 50 dB apart
    torch.manual_seed(1)
    mixed, targets, partners, r = mix_batch(wave, torch.arange(8) % 4, 4, "bc", 16000)
    torch.testing.assert_close(mixed, bc_mix(wave, wave[partners], r, 16000), atol=1e-6, rtol=1e-5)
    assert not torch.allclose(mixed, (r[:, None] * wave + (1 - r[:, None]) * wave[partners]))  # not a plain mix
