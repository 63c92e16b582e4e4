"""The LightningModule: mixing only while fitting, features on the batch's device."""

import lightning as L
import numpy as np
import torch

from asc.bench import numpy_power_filterbank
from asc.config import load_config, to_dict
from asc.data import load_clipset
from asc.data.datamodule import SceneDataModule
from asc.features import LogSpectrogram
from asc.module import SceneClassifier
from asc.pipeline import FeaturePipeline
from helpers.cli import TINY_MODEL as TINY


class Spy(L.Callback):
    """Records which stages saw mixed (soft-target) batches."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.append(("train", "target" in batch, bool((batch["target"].max(1).values < 1).any())))

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        self.seen.append(("sanity" if trainer.sanity_checking else "val", "target" in batch, False))


def test_mixing_only_while_training():
    cfg = load_config(overrides=TINY)
    clips = load_clipset(cfg.data)
    module = SceneClassifier(to_dict(cfg), clips.class_names, 1)
    spy = Spy()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[spy])
    dm = SceneDataModule(clips, 1, cfg)
    trainer.fit(module, dm)
    stages = {s for s, _, _ in spy.seen}
    assert stages == {"sanity", "train", "val"}
    assert all(has_target and soft for s, has_target, soft in spy.seen if s == "train")  # BC: soft targets
    assert not any(has_target for s, has_target, _ in spy.seen if s != "train")
    assert dm.pipeline.fitted  # statistics from the training split were computed before the first batch
    assert set(dm.state_dict()["band_stats"]) == {"mean", "std", "fitted"}


def test_prepare_batch_unmixed_features_equal_frontend():
    cfg = load_config(overrides=TINY)
    pipeline = FeaturePipeline(cfg, 3)
    wave = 0.1 * torch.randn(4, int(cfg.data.segment_seconds * cfg.data.sample_rate))
    batch = pipeline.prepare({"wave": wave, "label": torch.tensor([0, 1, 2, 0])}, training=False)
    torch.testing.assert_close(batch["spec"], pipeline.features(wave))
    mixed = pipeline.prepare({"wave": wave, "label": torch.tensor([0, 1, 2, 0])}, training=True)
    assert mixed["target"].shape == (4, 3) and not torch.allclose(mixed["spec"], batch["spec"])


def test_frontend_matches_numpy_reference():
    """nnAudio's Gammatone and mel power spectrograms against an independent NumPy STFT
    through the same filterbank."""
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((2, 22050))).astype(np.float64)
    for name in ("gammatone", "mel"):
        fe = LogSpectrogram(name, 22050, 64)
        basis = (fe.layer.gammatone_basis if name == "gammatone" else fe.layer.mel_basis).double().numpy()
        ref = numpy_power_filterbank(x, 882, fe.hop, basis)
        got = fe.layer(torch.tensor(x, dtype=torch.float32)).double().numpy()
        assert got.shape == ref.shape
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-4

