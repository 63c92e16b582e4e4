"""Parameters and multiply-accumulates per second of audio, against a hand count."""

import pytest
import torch

from asc.config import load_config
from asc.models.complexity import complexity_from_config, count_macs, count_parameters, model_complexity

# 8 kHz, 16/8 ms frames (128 / 64 samples), 8 gammatone bands, 0.5 s segments: 4000 // 64 + 1 = 63 frames
TINY = ["data.sample_rate=8000", "data.segment_seconds=0.5", "features.n_bins=8", "features.win_ms=16.0",
        "features.hop_ms=8.0", "features.fmin=100.0", "model.conv_channels=[2,3]", "model.freq_pool=[2,2]",
        "model.time_pool=[2,1]", "model.rnn_hidden=4", "model.attention_dim=3", "model.max_aux_weight=0"]


def hand_count_stap_crnn() -> tuple[int, int]:
    """(parameters, MACs of one 0.5 s segment) of the TINY STAP-CRNN with 2 classes."""
    F, T = 8, 63
    H, D, A, C = 4, 8, 3, 2  # GRU hidden per direction, D = 2H, attention size, classes
    conv = (2 * 1 * 9 * F * T + 2 * 2 * 9 * F * T  # block 1 at 8 x 63, then pool (2, 2): 4 x 32
            + 3 * 2 * 9 * 4 * 32 + 3 * 3 * 9 * 4 * 32)  # block 2 at 4 x 32, then pool (2, 1): 2 x 32
    gru_in, steps = 3 * 2, 32
    gru = steps * 2 * 3 * H * (gru_in + H)  # 2 directions, 3 gates, input and hidden products
    attention = steps * D * A + steps * A + (D * A + A * D)  # temporal proj + score; spatial summary MLP
    head = D * C
    macs = conv + gru + attention + head
    params = ((2 * 1 + 2 * 2 + 3 * 2 + 3 * 3) * 9  # conv weights (no bias)
              + 2 * (2 + 2 + 3 + 3)  # batch-norm weight and bias
              + 2 * (3 * H * gru_in + 3 * H * H + 2 * 3 * H)  # GRU, 2 directions, 2 bias vectors
              + (D * A + A) + A  # temporal attention
              + (D * A + A) + (A * D + D)  # spatial summary MLP
              + (D * C + C))  # classifier
    return params, macs


def test_stap_crnn_matches_a_hand_count():
    params, macs = hand_count_stap_crnn()
    c = complexity_from_config(load_config(overrides=TINY), n_classes=2)
    assert c["params"] == params == 604
    assert c["macs_per_second"] == round(macs / 0.5)
    # front-end: STFT as two convolutions (cos, sin) of 65 bins x 128 taps per frame, then the
    # 8 x 65 gammatone filterbank per frame
    assert c["frontend_macs_per_second"] == round((2 * 65 * 128 * 63 + 8 * 65 * 63) / 0.5)
    # the auxiliary max-pooling classifier (training only): C x (D + 1) more parameters
    with_aux = complexity_from_config(load_config(overrides=TINY + ["model.max_aux_weight=1"]), n_classes=2)
    assert with_aux["params"] == 604 + 2 * (8 + 1)


def test_counting_primitives():
    lin = torch.nn.Linear(5, 3)
    assert count_parameters(lin) == 18 and count_macs(lin, torch.zeros(4, 5)) == 4 * 5 * 3
    lin.weight.requires_grad_(False)
    assert count_parameters(lin) == 3  # trainable only
    gru = torch.nn.GRU(6, 4, batch_first=True)
    assert count_macs(gru, torch.zeros(1, 10, 6)) == 10 * 3 * 4 * (6 + 4)


@pytest.mark.parametrize("variant", ["mean", "temporal", "cnn"])
def test_other_variants_cost_what_their_parts_cost(variant):
    """Pooling without attention adds no MACs; temporal attention adds its scorer; the CNN
    has no recurrent layer."""
    _, stap = hand_count_stap_crnn()
    c = complexity_from_config(load_config(overrides=TINY + [f"model.variant={variant}"]), n_classes=2)
    steps, D, A = 32, 8, 3
    spatial, temporal = D * A + A * D, steps * D * A + steps * A
    if variant == "mean":
        assert c["macs_per_second"] == round((stap - spatial - temporal) / 0.5)
    elif variant == "temporal":
        assert c["macs_per_second"] == round((stap - spatial) / 0.5)
    else:
        conv = 2 * 1 * 9 * 8 * 63 + 2 * 2 * 9 * 8 * 63 + 3 * 2 * 9 * 4 * 32 + 3 * 3 * 9 * 4 * 32
        assert c["macs_per_second"] == round((conv + 2 * 3 * 2) / 0.5)  # head: Linear(2 * 3 channels, 2)


def test_a_built_module_counts_like_its_config():
    """model_complexity on the network inside a SceneClassifier (what experiment.py holds)."""
    from asc.config import to_dict
    from asc.module import SceneClassifier

    cfg = load_config(overrides=TINY)
    module = SceneClassifier(to_dict(cfg), ["a", "b"])
    got = model_complexity(module.model, cfg.features, cfg.data.sample_rate, cfg.data.segment_seconds)
    assert got == complexity_from_config(cfg, 2)
    assert module.model.training  # counted on a copy: the module is left as it was


def test_bench_reports_complexity():
    from asc.bench import bench_complexity
    from asc.models.complexity import format_complexity

    rows = bench_complexity()
    assert [r["model"] for r in rows] == ["stap-crnn", "cnn"]
    assert all(r["params"] > 0 and r["macs_per_second"] > 0 and r["frontend_macs_per_second"] > 0 for r in rows)
    lines = format_complexity(rows)
    assert lines[0].split()[:2] == ["model", "parameters"] and lines[1].startswith("stap-crnn")
    assert f"{rows[0]['params']:,d}" in lines[1]
