"""Frame masks: padding never enters pooling, attention, the GRU or the band statistics;
clips of very different lengths, clips shorter than a frame and silent partners train
without NaN."""

import numpy as np
import pytest
import torch

from asc.augment import roll_frames, spec_mask
from asc.config import load_config, to_dict
from asc.data.base import ArrayStore, ClipSet
from asc.data.batches import Collate, Crops
from asc.features import BandStandardizer, frame_mask
from asc.models import build_model
from asc.models.pooling import build_pooling
from asc.module import SceneClassifier
from asc.pipeline import FeaturePipeline

B, T, D = 3, 12, 6
LENGTHS = [12, 7, 1]


def _valid():
    return torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None]


@pytest.mark.parametrize("name", ["stap", "temporal", "spatial", "mean", "max"])
def test_pooling_ignores_padding(name):
    """Each clip pooled inside a padded batch equals the clip pooled alone, and the
    attention on padded frames is exactly 0."""
    torch.manual_seed(0)
    pool = build_pooling(name, D, 8).eval()
    o = torch.randn(B, T, D)
    z, attn = pool(o, _valid())
    for b, n in enumerate(LENGTHS):
        z_alone, attn_alone = pool(o[b:b + 1, :n])
        torch.testing.assert_close(z[b:b + 1], z_alone)
        torch.testing.assert_close(attn["temporal"][b, :n], attn_alone["temporal"][0])
        assert float(attn["temporal"][b, n:].detach().abs().sum()) == 0.0
    torch.testing.assert_close(attn["temporal"].sum(1), torch.ones(B))


@pytest.mark.parametrize("name,pooling", [("crnn", "stap"), ("crnn", "max"), ("cnn", "stap")])
def test_model_output_does_not_depend_on_padding_content(name, pooling):
    cfg = load_config(overrides=[f"model.name={name}", f"model.pooling={pooling}", "model.conv_channels=[4,8]",
                                 "model.freq_pool=[4,4]", "model.time_pool=[2,1]", "model.rnn_hidden=8"])
    torch.manual_seed(0)
    net = build_model(cfg.model, 5, 16).eval()
    spec = torch.randn(2, 16, 40)
    valid = torch.arange(40)[None, :] < torch.tensor([40, 13])[:, None]
    garbage = spec.clone()
    garbage[1, :, 13:] = 1e3 * torch.randn(16, 27)
    a, _ = net(spec, valid)
    b, _ = net(garbage, valid)
    torch.testing.assert_close(a, b)
    assert torch.isfinite(a).all()


def test_clip_in_a_padded_batch_equals_the_clip_alone():
    """Conv stack (activations re-zeroed on padding), packed GRU and pooling: in eval mode
    the recurrent output at valid frames and the logits equal those of the unpadded clip
    (the GRU's backward direction would otherwise start inside the padding)."""
    cfg = load_config(overrides=["model.conv_channels=[4,4]", "model.freq_pool=[4,4]", "model.time_pool=[2,1]",
                                 "model.rnn_hidden=8", "model.pooling=stap"])
    torch.manual_seed(0)
    net = build_model(cfg.model, 3, 16)
    for m in net.modules():  # non-trivial BatchNorm statistics, so zeros do not stay zeros
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.bias.data.uniform_(-1, 1)
    net.eval()
    seen = {}
    net.pool.register_forward_hook(lambda m, args, out: seen.__setitem__("o", args[0]))
    spec = torch.randn(2, 16, 30)
    logits, _ = net(spec, torch.arange(30)[None, :] < torch.tensor([30, 9])[:, None])
    padded = seen["o"][1, :5]  # 9 frames -> 5 after time pooling by 2 (ceil)
    alone, _ = net(spec[1:, :, :9])
    torch.testing.assert_close(padded, seen["o"][0])
    torch.testing.assert_close(logits[1:], alone)


def test_frame_mask_and_band_statistics_exclude_padding():
    valid = frame_mask(torch.tensor([3200, 100, 0]), hop=320, n_total=11, win=640)
    assert valid.sum(1).tolist() == [11, 1, 1]  # every clip keeps at least one frame
    norm = BandStandardizer(2)
    spec = torch.zeros(2, 2, 11)
    spec[0] = 1.0
    spec[1, :, :1] = 3.0
    spec[1, :, 1:] = -100.0  # padding: would drag the mean down if it counted
    norm.update(spec, valid[:2])
    norm.finalize()
    torch.testing.assert_close(norm.mean, torch.full((2,), (11 * 1.0 + 3.0) / 12))


def test_roll_and_masks_stay_inside_valid_frames():
    torch.manual_seed(0)
    spec = torch.arange(T, dtype=torch.float32)[None, None, :].repeat(B, 4, 1) + 1
    valid = _valid()
    rolled = roll_frames(spec, valid)
    for b, n in enumerate(LENGTHS):
        assert sorted(rolled[b, 0, :n].tolist()) == sorted(spec[b, 0, :n].tolist())  # a permutation of valid frames
        assert rolled[b, 0, n:].tolist() == spec[b, 0, n:].tolist()  # padding in place
        orig = spec[b, 0, :n].numpy()
        assert any(rolled[b, 0, :n].tolist() == np.roll(orig, k).tolist() for k in range(n))  # circular
    masked = spec_mask(spec, valid, 0, 0, time_masks=3, time_width=4)
    for b, n in enumerate(LENGTHS):
        assert masked[b, :, n:].tolist() == spec[b, :, n:].tolist()  # no stripe starts in padding
    masked = spec_mask(spec, valid, freq_masks=2, freq_width=2, time_masks=0, time_width=1)
    assert ((masked == 0).all(2).sum(1) <= 4).all() and (masked == 0).any()


def _clips(lengths_s, sr=8000):
    rng = np.random.default_rng(0)
    n = int(max(lengths_s) * sr)
    waves = np.zeros((len(lengths_s), n), dtype=np.float32)
    for i, s in enumerate(lengths_s):
        waves[i, :int(s * sr)] = 0.1 * rng.standard_normal(int(s * sr))

    class Store(ArrayStore):
        def length(self, index):
            return int(lengths_s[index] * sr)

        def get(self, index, start=0, stop=None):
            return self.waves[index, :self.length(index)][start:stop]

    labels = np.arange(len(lengths_s)) % 2
    return ClipSet("t", ["a", "b"], [f"c{i}" for i in range(len(lengths_s))], labels,
                   {1: (np.arange(len(lengths_s)), np.arange(2))}, Store(waves, sr))


@pytest.mark.parametrize("segment, mix", [(2.0, "bc"), (None, "bc"), (None, "bc_spec")])
def test_training_step_on_very_different_lengths_is_finite(segment, mix):
    """0.1 s, 30 s and a clip shorter than one frame (5 ms) in one BC batch (waveforms or
    spectrograms mixed), with a silent partner: a finite loss and finite gradients."""
    clips = _clips([0.1, 30.0, 0.005, 1.0])
    silent = clips.audio.waves.copy()
    silent[3] = 0.0
    clips.audio.waves = silent
    cfg = load_config(overrides=["data.sample_rate=8000", "model.conv_channels=[4,8]", "model.freq_pool=[4,4]",
                                 "model.time_pool=[2,1]", "model.rnn_hidden=8", "features.n_bins=16",
                                 f"data.segment_seconds={'null' if segment is None else segment}",
                                 "augment.roll=true", "augment.time_masks=2", "augment.freq_masks=1",
                                 "augment.gain_db=6", f"augment.mix={mix}"])
    module = SceneClassifier(to_dict(cfg), clips.class_names)
    seg = None if segment is None else int(segment * 8000)
    def crop(i):  # the first `seg` samples of clip i (all of it when shorter)
        n = clips.audio.length(i)
        return Crops(clips)[(i, 0, min(n, seg or n))]

    batch = Collate(False, seg or 0)([crop(i) for i in range(4)])
    assert batch["length"].tolist() == [800, seg or 240000, 40, 8000]
    pipeline = FeaturePipeline(cfg, len(clips.class_names))
    pipeline.fit([Collate(True, seg or 0)([{**crop(i), "index": i, "wave": crop(i)["wave"][None]}
                                           for i in range(4)])], torch.device("cpu"))
    assert torch.isfinite(pipeline.norm.mean).all() and torch.isfinite(pipeline.norm.std).all()
    out = pipeline.prepare(batch, training=True)
    logits, _ = module(out["spec"], out["valid"])
    loss = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), out["target"], reduction="batchmean")
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_loader_says_on_the_host_whether_a_batch_is_padded_and_the_pipeline_trusts_it():
    """Collate's ``padded`` flag (waves and device rows alike) lets the pipeline skip the
    frame mask, and the device sync it costs, for batches without padding."""
    full = [{"wave": torch.ones(800), "label": 0}, {"wave": torch.ones(800), "label": 1}]
    short = [full[0], {"wave": torch.ones(300), "label": 1}]
    assert Collate(False, 800)(full)["padded"] is False
    assert Collate(False, 800)(short)["padded"] is True
    rows = [{"rows": [(0, 0, 800)], "label": 0}, {"rows": [(1, 0, 800)], "label": 1}]
    assert Collate(False, 800)(rows)["padded"] is False
    assert Collate(False, 800)([rows[0], {"rows": [(1, 0, 300)], "label": 1}])["padded"] is True
    cfg = load_config(overrides=["data.sample_rate=8000", "features.n_bins=16", "augment.mix=none"])
    pipeline = FeaturePipeline(cfg, 2)
    batch = Collate(False, 800)(short)
    pipeline.fit([{**batch, "wave": batch["wave"]}], torch.device("cpu"))
    assert pipeline.prepare(dict(batch), training=False)["valid"] is not None
    trusted = pipeline.prepare({**batch, "padded": False}, training=False)
    assert trusted["valid"] is None  # the host's word is taken: no mask computed
    torch.testing.assert_close(pipeline.prepare(Collate(False, 800)(full), training=False)["spec"],
                               pipeline.features(torch.ones(2, 800)))


@pytest.mark.parametrize("clip_mean", [False, True])
@pytest.mark.parametrize("rate, win_ms, hop_ms, lengths", [
    (44100, 30.0, 10.0, [44100, 20000]),  # an odd window: frames from the front-end, not a formula
    (16000, 40.0, 20.0, [500, 200]),  # every row shorter than one window
])
def test_frame_mask_has_the_spectrogram_width(clip_mean, rate, win_ms, hop_ms, lengths):
    cfg = load_config(overrides=[f"data.sample_rate={rate}", "features.n_bins=16", f"features.win_ms={win_ms}",
                                 f"features.hop_ms={hop_ms}", f"features.subtract_clip_mean={str(clip_mean).lower()}"])
    pipeline = FeaturePipeline(cfg, 2)
    items = [{"wave": 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(n)), "label": i}
             for i, n in enumerate(lengths)]
    batch = Collate(False)(items)
    pipeline.fit([batch], torch.device("cpu"))
    out = pipeline.prepare(dict(batch), training=False)
    assert out["valid"] is not None and out["valid"].shape == (2, out["spec"].shape[-1])
    assert torch.isfinite(out["spec"]).all()
