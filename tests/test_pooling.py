import pytest
import torch

from asc.config import load_config
from asc.models import build_model
from asc.models.pooling import SpatioTemporalAttentionPooling, build_pooling
from asc.registry import POOLINGS

B, T, D = 3, 11, 8


@pytest.mark.parametrize("spatial", ["summary", "track"])
def test_stap_shapes_and_mask_algebra(spatial):
    pool = SpatioTemporalAttentionPooling(D, spatial=spatial, n_frames=T)
    o = torch.randn(B, T, D)
    z, attn = pool(o)
    a, s, m = attn["temporal"], attn["spatial"], attn["mask"]
    assert z.shape == (B, D) and a.shape == (B, T) and s.shape == (B, D) and m.shape == (B, T, D)
    torch.testing.assert_close(a.sum(1), torch.ones(B))
    torch.testing.assert_close(s.sum(1), torch.ones(B))
    torch.testing.assert_close(m, a[:, :, None] * s[:, None, :])  # outer product
    torch.testing.assert_close(m.sum((1, 2)), torch.ones(B))
    torch.testing.assert_close(z, D * (m * o).sum(1))
    assert (a > 0).all() and (s > 0).all()


def test_uniform_spatial_vector_gives_temporal_attention_pooling():
    pool = SpatioTemporalAttentionPooling(D)
    o = torch.randn(B, T, D)
    a = pool.temporal(o)
    z, _ = pool.pool(o, a, torch.full((B, D), 1.0 / D))
    torch.testing.assert_close(z, (a[:, :, None] * o).sum(1))


def test_stap_is_not_temporal_pooling_when_spatial_is_peaked():
    pool = SpatioTemporalAttentionPooling(D)
    o = torch.randn(B, T, D)
    a = pool.temporal(o)
    s = torch.zeros(B, D)
    s[:, 0] = 1.0
    z, _ = pool.pool(o, a, s)
    assert torch.allclose(z[:, 1:], torch.zeros(B, D - 1))
    torch.testing.assert_close(z[:, 0], D * (a * o[:, :, 0]).sum(1))


def test_track_variant_needs_fixed_length():
    with pytest.raises(ValueError):
        SpatioTemporalAttentionPooling(D, spatial="track")
    pool = SpatioTemporalAttentionPooling(D, spatial="track", n_frames=T)
    with pytest.raises(ValueError, match="T=11"):
        pool(torch.randn(B, T + 1, D))


@pytest.mark.parametrize("name", POOLINGS.keys())  # every registered pooling, new ones included
def test_every_pooling_returns_valid_attention(name):
    o = torch.randn(B, T, D)
    z, attn = build_pooling(name, D)(o)
    assert z.shape == (B, D)
    torch.testing.assert_close(attn["mask"].sum((1, 2)), torch.ones(B))
    if name == "mean":
        torch.testing.assert_close(z, o.mean(1))
    if name == "max":
        torch.testing.assert_close(z, o.amax(1))
    if name == "temporal":
        torch.testing.assert_close(attn["spatial"], torch.full((B, D), 1.0 / D))
    if name == "spatial":
        torch.testing.assert_close(attn["temporal"], torch.full((B, T), 1.0 / T))


@pytest.mark.parametrize("overrides", [["model.name=crnn"], ["model.name=cnn"],
                                       ["model.pooling=max"], ["model.spatial_attention=track"]])
def test_models_forward_logits_and_attention(overrides):
    cfg = load_config(overrides=overrides)
    model = build_model(cfg.model, n_classes=5, n_bins=64, n_frames=101)
    logits, attn = model(torch.randn(2, 64, 101))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    if cfg.model.name == "crnn":
        assert attn["temporal"].shape == (2, 51)  # time pooled by 2
        assert attn["mask"].shape == (2, 51, 2 * cfg.model.rnn_hidden)
    else:
        assert attn == {}


def test_weight_spread_counts_only_valid_frames():
    from asc.models.pooling import masked_softmax, weight_spread

    valid = torch.tensor([[True] * 6 + [False] * 4, [True] * 10])
    uniform = masked_softmax(torch.zeros(2, 10), valid)  # equal scores: uniform over the valid frames
    torch.testing.assert_close(weight_spread(uniform, valid), torch.ones(2))
    peaked = torch.zeros(2, 10)
    peaked[:, 0] = 1.0
    torch.testing.assert_close(weight_spread(peaked, valid), torch.tensor([1 / 6, 1 / 10]))
    # the padding's weight does not count (it is exactly 0 after a masked softmax anyway)
    torch.testing.assert_close(weight_spread(torch.ones(1, 10), valid[:1]), torch.ones(1))
