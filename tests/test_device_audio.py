"""Training crops drawn by seed and epoch, and the fold's audio held on the device
(``data.on_device``): the same rows, the same waveforms, the same training as reading."""

import lightning as L
import numpy as np
import pytest
import torch

from asc.config import load_config, to_dict
from asc.data import load_clipset
from asc.data.batches import Collate, Crops, TrainCrops
from asc.data.datamodule import SceneDataModule
from asc.data.device_audio import DeviceAudio, audio_bytes, use_device_audio
from asc.errors import AscError
from asc.module import SceneClassifier

LENGTHS = np.array([100, 50, 300, 20, 80, 300, 10], dtype=np.int64)


def test_train_crops_cover_each_clip_once_per_epoch_inside_the_clip():
    crops = TrainCrops(np.arange(7), LENGTHS, segment=60, batch_size=3, drop_last=False, seed=1)
    rows = [r for batch in crops for r in batch]
    assert len(crops) == 3 and sorted(r[0] for r in rows) == list(range(7))
    for clip, start, size in rows:
        assert size == min(LENGTHS[clip], 60) and 0 <= start <= LENGTHS[clip] - size


def test_train_crops_depend_on_seed_and_epoch_only():
    def epoch_rows(seed, epoch):
        crops = TrainCrops(np.arange(7), LENGTHS, 60, 3, False, seed)
        crops.set_epoch(epoch)
        return [r for batch in crops for r in batch]

    assert epoch_rows(1, 4) == epoch_rows(1, 4)  # a resumed run draws what an uninterrupted one did
    assert epoch_rows(1, 4) != epoch_rows(1, 5) and epoch_rows(1, 4) != epoch_rows(2, 4)


def test_train_crops_shard_by_rank():
    """Two ranks: the same epoch, alternate crops, as many batches of ``batch_size`` on each."""
    rows = [r for batch in TrainCrops(np.arange(7), LENGTHS, 60, 7, True, seed=3) for r in batch]
    ranks = [list(TrainCrops(np.arange(7), LENGTHS, 60, 2, True, seed=3, rank=r, world=2)) for r in range(2)]
    assert ranks[0] == [[rows[0], rows[2]]] and ranks[1] == [[rows[1], rows[3]]]  # 3 each: the last one dropped
    assert TrainCrops(np.arange(3), LENGTHS, 60, 4, True, seed=3, world=2).__len__() == 1  # fewer clips than a batch


def test_gather_cuts_the_rows_of_the_store():
    cfg = load_config(overrides=["data.synthetic.n_classes=2", "data.synthetic.clips_per_class=2"])
    clips = load_clipset(cfg.data)
    audio = DeviceAudio(clips.audio, np.array([1, 3]), torch.device("cpu"))
    assert audio.nbytes == audio_bytes(clips.audio, np.array([1, 3])) == 2 * 2 * clips.audio.length(0)
    rows = torch.tensor([[3, 100, 50], [1, 0, 20]])
    wave, length = audio.gather(rows, 60)
    assert wave.shape == (2, 60) and length.tolist() == [50, 20]
    f16 = lambda x: torch.from_numpy(x).half().float()  # noqa: E731 - held as float16
    torch.testing.assert_close(wave[0, :50], f16(clips.audio.get(3, 100, 150)), rtol=0, atol=0)
    torch.testing.assert_close(wave[1, :20], f16(clips.audio.get(1, 0, 20)), rtol=0, atol=0)
    assert not wave[0, 50:].any() and not wave[1, 20:].any()


def test_auto_is_off_on_cpu_and_on_forces_it():
    assert use_device_audio("auto", torch.device("cpu"), 10, 0.5) == (False, None)
    assert use_device_audio("on", torch.device("cpu"), 10, 0.5) == (True, None)
    assert use_device_audio("off", torch.device("cpu"), 10, 0.5) == (False, None)


def test_on_device_values():
    with pytest.raises(AscError, match="data.on_device"):
        load_config(overrides=["data.on_device=gpu"])
    for bad in ("0", "1.5"):
        with pytest.raises(AscError, match="data.on_device_max_fraction"):
            load_config(overrides=[f"data.on_device_max_fraction={bad}"])
    # YAML reads a bare on/off as a boolean: still the choice the user meant
    assert load_config(overrides=["data.on_device=off"]).data.on_device == "off"
    assert load_config(overrides=["data.on_device=on"]).data.on_device == "on"


def _fold(on_device: str, **over):
    cfg = load_config(overrides=["data.synthetic.n_classes=3", "data.synthetic.clips_per_class=6",
                                 "data.synthetic.n_folds=2", "data.batch_size=4", "model.conv_channels=[4,8]",
                                 "model.freq_pool=[4,4]", "model.time_pool=[2,2]", "model.rnn_hidden=8",
                                 "features.n_bins=16", "augment.roll=true", "augment.time_masks=1",
                                 f"data.on_device={on_device}", *[f"{k}={v}" for k, v in over.items()]])
    clips = load_clipset(cfg.data)
    # values float16 holds exactly: the file cache's precision, so both paths see the same samples
    clips.audio.waves = clips.audio.waves.astype(np.float16).astype(np.float32)
    return cfg, clips


def test_rows_and_waves_agree_between_the_paths():
    cfg, clips = _fold("off")
    read = SceneDataModule(clips, 1, cfg)
    cfg_on, _ = _fold("on")
    held = SceneDataModule(clips, 1, cfg_on)
    assert held.on_device and not read.on_device
    for a, b in zip(read.train_dataloader(), held.train_dataloader()):
        assert "wave" not in b and b["rows"].shape == (len(b["label"]), 3)  # the loader only names the crops
        b = held.waves(b, torch.device("cpu"))
        assert torch.equal(a["label"], b["label"]) and torch.equal(a["length"], b["length"])
        assert torch.equal(a["wave"], b["wave"])
    a, b = next(iter(read.test_dataloader())), held.waves(next(iter(held.test_dataloader())), torch.device("cpu"))
    assert torch.equal(a["wave"], b["wave"]) and torch.equal(a["clip"], b["clip"])
    assert torch.equal(a["index"], b["index"])


def test_collate_of_rows_gives_width_and_lengths():
    cfg, clips = _fold("on")
    items = [Crops(clips, read=False)[(0, 5, 10)], Crops(clips, read=False)[(2, 0, 30)]]
    batch = Collate(False, 16)(items)
    assert batch["rows"].tolist() == [[0, 5, 10], [2, 0, 30]] and batch["width"] == 30
    assert batch["length"].tolist() == [10, 30] and "wave" not in batch


@pytest.mark.parametrize("segment", [2.0, None])
def test_training_on_device_equals_training_from_the_loader(segment):
    """Same seed, same crops, same BC partners: the trained weights are identical."""
    weights = []
    for mode in ("off", "on"):
        cfg, clips = _fold(mode, **{"data.segment_seconds": "null" if segment is None else segment})
        L.seed_everything(0, verbose=False)
        module = SceneClassifier(to_dict(cfg), clips.class_names, 1)
        trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(module, SceneDataModule(clips, 1, cfg))
        weights.append({k: v.clone() for k, v in module.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_device_audio_unmaps_the_cache_as_it_goes(tmp_path, monkeypatch):
    """A memory-mapped cache read into the device tensor does not stay in the process's
    resident memory: it is unmapped every RELEASE_BYTES and at the end (the same audio)."""
    import asc.data.device_audio as device_audio
    from asc.data.audio import MemmapStore

    n, clips = 2**20, 24  # 48 MB of float16
    data = np.memmap(tmp_path / "a.f16", dtype=np.float16, mode="w+", shape=(n * clips,))
    data[:] = (np.arange(n * clips) % 1000 / 1000).astype(np.float16)
    data.flush()
    del data
    store = MemmapStore(tmp_path / "a.f16", np.arange(clips) * n, np.full(clips, n), 16000)
    released = []
    release = store.release
    monkeypatch.setattr(store, "release", lambda: (released.append(store._data is not None), release()))
    monkeypatch.setattr(device_audio, "RELEASE_BYTES", 8 * 2**20)  # every 4 clips

    def rss_file_mb() -> float:
        try:
            status = open("/proc/self/status").read()
        except OSError:
            return float("nan")
        return int(status.split("RssFile:")[1].split()[0]) / 1024

    before = rss_file_mb()
    audio = DeviceAudio(store, np.arange(clips), torch.device("cpu"))
    assert len(released) == clips // 4 + 1 and all(released[:-1]) and store._data is None
    if before == before:  # Linux: the 48 MB read are not resident any more
        assert rss_file_mb() - before < 24
    wave, size = audio.gather(torch.tensor([[5, 10, 100]]), 100)
    assert torch.equal(wave[0], torch.from_numpy(store.get(5, 10, 110)).half().float()) and int(size[0]) == 100
