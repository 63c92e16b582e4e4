"""The LightningModule: mixing only while fitting, features on the batch's device."""

import math

import lightning as L
import numpy as np
import pytest
import torch

from asc.bench import numpy_power_filterbank
from asc.config import load_config, to_dict
from asc.data import load_clipset
from asc.data.datamodule import SceneDataModule
from asc.features import LogSpectrogram
from asc.inference import load
from asc.models.pooling import weight_spread
from asc.module import SceneClassifier, WeightAverage, selection_score
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



def test_weight_average_is_an_exponential_average_of_weights_and_buffers():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(net, epochs=2.0)
    before = {k: v.clone() for k, v in average.module.state_dict().items()}
    with torch.no_grad():
        for t in [*net.parameters(), *net.buffers()]:
            t.add_(1)  # a step that moves every weight and statistic by 1 (the counter too)
    average.update(net, decay=0.75)
    after = average.module.state_dict()
    for key, old in before.items():
        if old.is_floating_point():
            torch.testing.assert_close(after[key], old + 0.25)  # 0.75 * old + 0.25 * (old + 1)
        else:
            assert torch.equal(after[key], net.state_dict()[key])  # BatchNorm's batch counter is copied
    assert not any(p.requires_grad for p in average.module.parameters())
    assert average.decay(0, steps_per_epoch=10) == 0.1  # the first steps barely remember the start
    assert abs(average.decay(10_000, steps_per_epoch=10) - math.exp(-1 / 20)) < 1e-12


def test_validation_and_saved_checkpoint_use_the_weight_average(tmp_path):
    cfg = load_config(overrides=TINY + ["optim.ema_epochs=3"])
    clips = load_clipset(cfg.data)
    module = SceneClassifier(to_dict(cfg), clips.class_names, 1)
    dm = SceneDataModule(clips, 1, cfg)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, dm)
    trained = {k: v.clone() for k, v in module.model.state_dict().items()}
    averaged = module.ema.module.state_dict()
    assert any(not torch.allclose(trained[k], averaged[k]) for k in trained)  # the average lags behind

    def val_loss():
        return trainer.validate(module, dm, verbose=False)[0]["val/loss"]

    with_average = val_loss()
    ema, module.ema = module.ema, None
    with_trained = val_loss()
    module.model.load_state_dict(ema.module.state_dict())  # the trained network given the average's weights
    assert val_loss() == with_average != with_trained
    module.model.load_state_dict(trained)
    module.ema = ema

    path = tmp_path / "ema.ckpt"
    trainer.save_checkpoint(path)
    stored = torch.load(path, weights_only=True)["state_dict"]
    predictor = load(path, device="cpu")
    for name, value in predictor.model.state_dict().items():  # inference gets the average, not the trained net
        assert torch.equal(value, stored[f"ema.module.{name}"])
    assert all(torch.equal(stored[f"model.{k}"], v) for k, v in trained.items())  # resuming gets the trained net
    assert any(not torch.equal(stored[f"ema.module.{k}"], v) for k, v in trained.items())


def test_compiled_training_steps_leave_checkpoints_and_evaluation_plain(tmp_path):
    """model.compile: training steps go through the torch.compile'd network and front-end
    (same front-end output); the checkpoint holds the plain network's keys, and a copy or
    pickle of the module does not carry the compiled wrapper."""
    import copy
    import pickle

    cfg = load_config(overrides=TINY + ["model.compile=default"])
    clips = load_clipset(cfg.data)
    module = SceneClassifier(to_dict(cfg), clips.class_names, 1)
    dm = SceneDataModule(clips, 1, cfg)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, dm)
    assert module.compiled._wrapper._orig_mod is module.model  # training called the compiled network
    assert dm.pipeline.compiled._wrapper._orig_mod is dm.pipeline.frontend  # ... and front-end
    assert any(not torch.equal(before[k], v) for k, v in module.model.state_dict().items())
    wave = torch.randn(2, 8000)
    assert torch.allclose(dm.pipeline.compiled(dm.pipeline.frontend)(wave), dm.pipeline.frontend(wave), atol=1e-4)
    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)
    assert set(torch.load(path, weights_only=True)["state_dict"]) == {f"model.{k}" for k in before}
    assert copy.deepcopy(module).compiled._wrapper is None
    assert pickle.loads(pickle.dumps(module.compiled))._wrapper is None
    predictor = load(path, device="cpu")
    assert all(torch.equal(v, module.model.state_dict()[k]) for k, v in predictor.model.state_dict().items())


def test_fixed_rows_call_pads_to_one_shape_and_cuts_back():
    """Every call sees ``rows`` rows (zero spectrogram rows, all-valid mask rows); the outputs
    are the real rows of the logits and of the attention entries asked for, as copies."""
    from asc.compilation import fixed_rows_call

    seen = []

    def fn(spec, valid):
        seen.append((tuple(spec.shape), None if valid is None else tuple(valid.shape)))
        return spec.sum((1, 2))[:, None], {"temporal": spec.mean(1), "valid": valid.float()}

    spec, valid = torch.randn(3, 4, 6), torch.ones(3, 6, dtype=torch.bool)
    valid[1, 4:] = False
    logits, attn = fixed_rows_call(fn, spec, valid, rows=8, keep=("temporal", "valid"))
    assert seen == [((8, 4, 6), (8, 6))]
    assert torch.equal(logits[:, 0], spec.sum((1, 2))) and torch.equal(attn["temporal"], spec.mean(1))
    assert torch.equal(attn["valid"], valid.float())
    assert set(fixed_rows_call(fn, spec, valid, rows=8)[1]) == set()  # only the entries asked for
    with pytest.raises(ValueError, match="9 windows in one pass of 8 rows"):
        fixed_rows_call(fn, torch.randn(9, 4, 6), None, rows=8)
    full = torch.randn(8, 4, 6)
    out, _ = fixed_rows_call(lambda s, v: (s[:, 0, :1], {}), full, None, rows=8)
    assert torch.equal(out, full[:, 0, :1]) and out.data_ptr() != full.data_ptr()  # a copy, not a view


def test_compiled_evaluation_gives_the_plain_networks_outputs(monkeypatch):
    """model.compile_eval: evaluation windows go through the compiled network of what is
    evaluated (here the weight average), in passes of one shape whatever their count, with
    the plain network's logits and attention spread, frame masks included; the fold's
    Trainer then evaluates under no_grad instead of inference mode.  Compiled with a
    counting backend (no inductor): what is checked is which graphs get compiled."""
    from torch._dynamo.testing import CompileCounter

    from asc.fold import training_extras
    from asc.models.crnn import pool_mask

    counter, compile_ = CompileCounter(), torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, mode, dynamic: compile_(m, backend=counter, dynamic=dynamic))
    torch._dynamo.reset()  # no cache entries from other tests on the network's code
    cfg = load_config(overrides=TINY + ["model.compile=default", "model.compile_eval=true", "optim.ema_epochs=1"])
    module = SceneClassifier(to_dict(cfg), load_clipset(cfg.data).class_names, 1).eval()
    torch.manual_seed(0)
    frames, spreads = [], []
    for n, masked in [(5, False), (30, False), (17, False), (5, True), (30, True)]:  # one pass is 24 windows
        spec = torch.randn(n, int(cfg.features.n_bins), 40)
        valid = None
        if masked:  # a padded row in each pass of 24 (rows 1 and n - 1)
            valid = torch.ones(n, 40, dtype=torch.bool)
            valid[[1, n - 1], 25:] = False
        with torch.no_grad():
            got = module._eval_logits(spec, valid, track_spread=True)
            want, attn = module.eval_model(spec, valid)
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-6)
        spreads.append(weight_spread(attn["temporal"], pool_mask(valid, cfg.model.time_pool)))
        frames.append(counter.frame_count)
    torch._dynamo.reset()
    assert module.compiled_eval._wrapper._orig_mod is module.eval_model is not module.model
    assert frames[0] == frames[1] == frames[2] > 0  # 5, 30 (24 + 6) and 17 windows: compiled once
    assert frames[4] == frames[3] > frames[2]  # with a frame mask: other graphs, compiled once
    assert torch.allclose(module.val_spread["time"].compute(), torch.cat(spreads).mean(), atol=1e-5)
    assert training_extras(cfg, 1, {})[1]["inference_mode"] is False
    assert "inference_mode" not in training_extras(load_config(overrides=TINY), 1, {})[1]


def test_a_resumed_optimizer_takes_this_runs_fusion(tmp_path):
    """A checkpoint's optimizer state written with another ``fused`` setting (fused on a
    GPU, resumed on a CPU; or written before AdamW was fused) resumes with this run's."""
    cfg = load_config(overrides=TINY)
    clips = load_clipset(cfg.data)

    def trainer(epochs):
        return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)

    first = trainer(1)
    first.fit(SceneClassifier(to_dict(cfg), clips.class_names, 1), SceneDataModule(clips, 1, cfg))
    path = tmp_path / "epoch1.ckpt"
    first.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    for group in checkpoint["optimizer_states"][0]["param_groups"]:
        group["fused"] = True  # as a CUDA run writes it
    torch.save(checkpoint, path)
    second = trainer(2)
    second.fit(SceneClassifier(to_dict(cfg), clips.class_names, 1), SceneDataModule(clips, 1, cfg), ckpt_path=path)
    assert second.current_epoch == 2
    assert all(group["fused"] is None for group in second.optimizers[0].param_groups)


def test_evaluation_in_chunks_gives_the_logits_of_one_pass():
    cfg = load_config(overrides=TINY)  # data.batch_size=6: at most 24 windows per forward pass
    module = SceneClassifier(to_dict(cfg), ["a", "b", "c"]).eval()
    spec = torch.randn(60, 64, 101)
    valid = torch.ones(60, 101, dtype=torch.bool)
    valid[::7, 60:] = False  # some windows padded
    with torch.no_grad():
        whole = module.eval_model(spec, valid)[0]
        sizes = []
        hook = module.model.register_forward_hook(lambda mod, args, out: sizes.append(len(args[0])))
        chunked = module._eval_logits(spec, valid)
        hook.remove()
    assert sizes == [24, 24, 12]
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5)


def test_validation_logs_how_far_attention_is_from_a_plain_mean():
    """val/attention_spread_time and _features: exp(entropy) / count of each validation
    window's attention weights over its valid frames; exactly 1 for mean pooling, below 1
    for attention, absent for the CNN (no attention)."""
    spreads = {}
    for overrides in (["model.pooling=stap"], ["model.pooling=mean"], ["model.name=cnn"]):
        cfg = load_config(overrides=TINY + overrides)
        clips = load_clipset(cfg.data)
        module = SceneClassifier(to_dict(cfg), clips.class_names, 1)
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(module, SceneDataModule(clips, 1, cfg))
        spreads[overrides[0]] = {k: float(v) for k, v in trainer.callback_metrics.items() if "spread" in k}
        assert trainer.callback_metrics["val/select"].dtype == torch.float64  # logged as computed
    stap, mean, cnn = spreads.values()
    assert set(stap) == set(mean) == {"val/attention_spread_time", "val/attention_spread_features"} and not cnn
    assert mean["val/attention_spread_time"] == pytest.approx(1.0) == mean["val/attention_spread_features"]
    assert 0 < stap["val/attention_spread_time"] < 1 and 0 < stap["val/attention_spread_features"] < 1


def test_checkpoint_selection_breaks_accuracy_ties_by_small_loss_differences():
    """val/select = acc - 1e-6 * loss in float64: a loss lower by 0.01 at the same accuracy
    wins (in float32 the two were equal and the earlier epoch stayed chosen); one clip of
    accuracy in 50 000 outweighs any loss."""

    acc = torch.tensor(0.8)  # float32, as torchmetrics returns it
    assert selection_score(acc, torch.tensor(0.51)) > selection_score(acc, torch.tensor(0.52))
    assert selection_score(acc + 1 / 50000, torch.tensor(18.5)) > selection_score(acc, torch.tensor(0.0))
