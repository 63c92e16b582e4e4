import numpy as np
import pytest
import torch

from asc.config import load_config
from asc.data import load_clipset
from asc.data.batches import EvenShards, segment_starts
from asc.data.datamodule import SceneDataModule
from asc.module import aggregate_segments


def tiny_cfg(**extra):
    return load_config(overrides=["data.synthetic.n_classes=3", "data.synthetic.clips_per_class=6",
                                  "data.synthetic.n_folds=2", "data.batch_size=4"]
                       + [f"{k}={v}" for k, v in extra.items()])


def test_segments_cover_the_clip():
    starts = segment_starts(64000, 32000, 16000)
    assert starts.tolist() == [0, 16000, 32000]
    starts = segment_starts(50000, 32000, 16000)
    assert starts[0] == 0 and starts[-1] + 32000 == 50000 and np.all(np.diff(starts) <= 16000)
    assert segment_starts(1000, 32000, 16000).tolist() == [0]


def test_fold_parts_and_batches():
    cfg = tiny_cfg()
    clips = load_clipset(cfg.data)
    dm = SceneDataModule(clips, 1, cfg)
    train, test = clips.folds[1]
    assert set(dm.train_idx) | set(dm.val_idx) == set(train)
    assert not set(dm.val_idx) & set(dm.test_idx) and not set(dm.train_idx) & set(dm.test_idx)
    assert len(dm.val_idx) == 3  # one per class (10 % rounds to 0, at least one)
    batch = next(iter(dm.train_dataloader()))
    assert batch["wave"].shape == (4, 32000) and batch["label"].shape == (4,)
    seen = []
    for batch in dm.test_dataloader():
        assert batch["wave"].shape[0] == 3 * len(batch["label"])  # 3 segments per 4-s clip
        seen += batch["index"].tolist()
    assert sorted(seen) == sorted(test.tolist())  # every test clip exactly once


def test_even_shards_cover_each_clip_once():
    ds = list(range(7))
    parts = [list(EvenShards(ds, r, 2)) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == ds and len(parts[0]) == 4 and len(parts[1]) == 3


def test_short_clips_are_padded():
    cfg = tiny_cfg(**{"data.segment_seconds": 5.0})
    clips = load_clipset(cfg.data)
    dm = SceneDataModule(clips, 1, cfg)
    assert next(iter(dm.train_dataloader()))["wave"].shape == (4, 80000)


def test_clip_aggregation():
    logits = torch.log(torch.tensor([[0.7, 0.3], [0.1, 0.9], [0.6, 0.4], [0.2, 0.8]]))
    clip = torch.tensor([0, 0, 0, 1])
    mean = aggregate_segments(logits, clip, 2, "mean_prob")
    torch.testing.assert_close(mean, torch.tensor([[1.4 / 3, 1.6 / 3], [0.2, 0.8]]))
    vote = aggregate_segments(logits, clip, 2, "vote")
    torch.testing.assert_close(vote, torch.tensor([[2 / 3, 1 / 3], [0.0, 1.0]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(vote.sum(1), torch.ones(2))
    # a tied vote goes to the class with the higher mean probability, not to the first class
    tied = aggregate_segments(torch.tensor([[0.0, 0.0, 9.0], [1.0, 0.9, 0.0]]), torch.tensor([0, 0]), 1, "vote")
    assert tied.argmax(1).item() == 2 and tied[0, 0] == pytest.approx(0.5, abs=1e-4)
    geo = aggregate_segments(logits, clip, 2, "mean_logprob")
    torch.testing.assert_close(geo.sum(1), torch.ones(2))
    assert geo[0, 0] < mean[0, 0]  # the 0.1 segment weighs more in the geometric mean
