"""Each family's registry: a throw-away member, registered here as a new module would
register it, becomes an allowed config value and is what the builders build; once
unregistered the value is refused again.  Copy the test of the family you extend."""

from contextlib import contextmanager

import pytest
import torch
from torch import nn

from asc.config import load_config
from asc.errors import AscError
from asc.registry import AUGMENTATIONS, FRONTENDS, LAYOUTS, MIXERS, MODELS, POOLINGS, Registry, call_with


@contextmanager
def registered(registry, key, member, **meta):
    registry.register(key, **meta)(member)
    try:
        yield member
    finally:
        registry.unregister(key)
    assert key not in registry.keys()


def test_registry_basics():
    reg = Registry("widget", "x.widget")
    reg.register("a", flag=True)(int)
    assert reg.keys() == ("a",) and reg.get("a") is int and reg.meta("a") == {"flag": True} and "a" in reg
    with pytest.raises(AscError, match=r"x.widget='b' is not allowed; choose one of: a"):
        reg.get("b")
    with pytest.raises(AscError, match="registered twice"):
        reg.register("a")(float)
    assert call_with(lambda x, y=2: x + y, x=1, y=3, z=9) == 4


class FirstFramePooling(nn.Module):
    """z = o_0; its 'attention' is all on the first frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, o, valid=None):
        a = torch.zeros(o.shape[:2])
        a[:, 0] = 1
        s = torch.full((o.shape[0], self.dim), 1.0 / self.dim)
        return o[:, 0], {"temporal": a, "spatial": s, "mask": a[:, :, None] * s[:, None, :]}


def test_a_new_pooling_is_configurable_and_built(tiny):
    from asc.models import build_model

    with pytest.raises(AscError, match="choose one of: stap, temporal, spatial, mean, max$"):
        load_config(overrides=["model.pooling=first"])
    with registered(POOLINGS, "first", FirstFramePooling):
        for override in ("model.pooling=first", "model.variant=first"):
            cfg = load_config(overrides=[*tiny, override])
            assert (cfg.model.name, cfg.model.pooling) == ("crnn", "first")
            net = build_model(cfg.model, n_classes=3, n_bins=64)
            assert isinstance(net.pool, FirstFramePooling)
            logits, attn = net(torch.randn(2, 64, 50))
            assert logits.shape == (2, 3) and attn["temporal"][:, 0].eq(1).all()
    with pytest.raises(AscError, match="model.variant='first' is not allowed"):
        load_config(overrides=["model.variant=first"])


class LinearModel(nn.Module):
    def __init__(self, n_classes: int, n_bins: int):
        super().__init__()
        self.head = nn.Linear(n_bins, n_classes)

    def forward(self, spec, valid=None):
        return self.head(spec.mean(-1)), {}


def test_a_new_model_is_configurable_and_built(tiny):
    from asc.models import build_model

    with registered(MODELS, "linear", LinearModel):
        for override in ("model.name=linear", "model.variant=linear"):
            cfg = load_config(overrides=[*tiny, override])
            assert cfg.model.name == "linear"
            net = build_model(cfg.model, n_classes=3, n_bins=64)
            assert isinstance(net, LinearModel) and net(torch.randn(2, 64, 50))[0].shape == (2, 3)
    with pytest.raises(AscError, match="model.name='linear' is not allowed; choose one of: crnn, cnn$"):
        load_config(overrides=["model.name=linear"])


class Framer(nn.Module):
    """Frame power in n_bins equal slices of each hop: a toy front-end."""

    def __init__(self, n_bins, hop):
        super().__init__()
        self.n_bins, self.hop = n_bins, hop

    def forward(self, wave):
        wave = nn.functional.pad(wave, (self.hop // 2, self.hop // 2 + self.hop))
        frames = wave.unfold(-1, self.hop, self.hop)[:, : wave.shape[-1] // self.hop - 1]
        return frames[..., : self.hop // self.n_bins * self.n_bins].reshape(*frames.shape[:2], self.n_bins, -1) \
            .pow(2).mean(-1).transpose(1, 2)


def test_a_new_front_end_is_configurable_and_built(tiny):
    from asc.features import LogSpectrogram

    with registered(FRONTENDS, "framer", lambda n_bins, hop: Framer(n_bins, hop)):
        cfg = load_config(overrides=[*tiny, "features.name=framer", "features.n_bins=8"])
        f = cfg.features
        fe = LogSpectrogram(f.name, cfg.data.sample_rate, f.n_bins, f.win_ms, f.hop_ms, f.fmin, f.fmax, f.log_eps)
        assert isinstance(fe.layer, Framer) and not fe.square
        assert fe(torch.randn(2, 16000)).shape == (2, 8, 51)  # frames of a centred front-end: N // hop + 1
    with pytest.raises(AscError, match="features.name='framer' is not allowed"):
        load_config(overrides=["features.name=framer"])


def swap_halves(wave, labels, onehot):
    """Every example mixed half and half with the one opposite it in the batch."""
    partners = torch.arange(len(labels)).flip(0)
    r = torch.full((len(labels),), 0.5)
    return 0.5 * (wave + wave[partners]), 0.5 * (onehot + onehot[partners]), partners, r


def test_a_new_mixer_is_configurable_and_used(tiny):
    from asc.augment import mix_batch, mix_spectrogram

    with registered(MIXERS, "swap", swap_halves):
        cfg = load_config(overrides=[*tiny, "augment.mix=swap"])
        wave, labels = torch.randn(4, 100), torch.tensor([0, 1, 2, 0])
        mixed, targets, partners, r = mix_batch(wave, labels, 3, cfg.augment.mix, 16000)
        torch.testing.assert_close(mixed, 0.5 * (wave + wave.flip(0)))
        assert targets.sum(1).allclose(torch.ones(4)) and partners.tolist() == [3, 2, 1, 0]
        spec = torch.randn(4, 8, 5)
        assert mix_spectrogram("swap", spec, partners, r) is spec  # no spectrogram part
    with pytest.raises(AscError, match="augment.mix='swap' is not allowed"):
        load_config(overrides=["augment.mix=swap"])


def test_a_new_data_set_layout_is_configurable_and_loaded(tiny):
    from asc.data import load_clipset, load_synthetic

    def few_scenes(data_cfg):  # in memory: data_cfg -> ClipSet
        clips = load_synthetic(data_cfg)
        clips.name = "few"
        return clips

    with registered(LAYOUTS, "few", few_scenes):
        cfg = load_config(overrides=[*tiny, "data.name=few"])
        clips = load_clipset(cfg.data)
        assert clips.name == "few" and len(clips) == 18
    with registered(LAYOUTS, "listed", lambda root: None, on_disk=True):
        with pytest.raises(AscError, match="data.name=listed needs data.root"):
            load_config(overrides=["data.name=listed"])
    with pytest.raises(AscError, match="data.name='few' is not allowed"):
        load_config(overrides=["data.name=few"])


def test_a_new_augmentation_stage_runs_where_registered_and_only_while_training(tiny):
    from asc.pipeline import FeaturePipeline

    calls = []

    def louder(wave, lengths, mixup_alpha):  # any augment.* key it names is passed in
        calls.append((lengths.tolist(), mixup_alpha))
        return 2 * wave

    plain = ["augment.mix=none", "augment.gain_db=0", "augment.roll=false", "augment.freq_masks=0",
             "augment.time_masks=0"]
    wave, labels = 0.1 * torch.randn(2, 16000), torch.tensor([0, 1])
    with registered(AUGMENTATIONS, "louder", louder, domain="wave", enabled=lambda a: a.mix == "none"):
        pipe = FeaturePipeline(load_config(overrides=[*tiny, *plain]), 3)
        out = pipe.prepare({"wave": wave, "label": labels}, training=True)
        torch.testing.assert_close(out["spec"], pipe.features(2 * wave))  # before the front-end
        assert calls == [([16000, 16000], 0.4)]
        torch.testing.assert_close(pipe.prepare({"wave": wave, "label": labels}, training=False)["spec"],
                                   pipe.features(wave))  # evaluation: no augmentation
        FeaturePipeline(load_config(overrides=[*tiny, *plain, "augment.mix=bc"]), 3).prepare(
            {"wave": wave, "label": labels}, training=True)
        assert len(calls) == 1  # not enabled by that config
    assert list(AUGMENTATIONS) == ["gain", "roll", "spec_mask"]  # the built-in stages, in order
