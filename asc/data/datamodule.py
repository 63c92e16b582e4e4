"""Waveform batches for one fold.

Training yields random segment crops; evaluation yields every clip exactly once, cut into
evenly spaced segments that cover the whole clip, so that the LightningModule can
aggregate segment probabilities into a clip decision.  Spectrograms are *not* computed
here: the LightningModule computes them (and the BC mix) on the training device in
``on_after_batch_transfer``.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from asc.data.base import ClipSet, stratified_split


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad a clip shorter than ``n`` samples at the end."""
    if len(wave) >= n:
        return wave
    return np.pad(wave, (0, n - len(wave)))


def segment_starts(n_samples: int, segment: int, hop: int) -> np.ndarray:
    """Start samples of evenly spaced segments covering a clip (first at 0, last ending at
    the clip's end); one segment for clips no longer than a segment."""
    if n_samples <= segment:
        return np.zeros(1, dtype=np.int64)
    n = math.ceil((n_samples - segment) / hop) + 1
    return np.round(np.linspace(0, n_samples - segment, n)).astype(np.int64)


class RandomCrops(Dataset):
    """One random ``segment``-sample crop of each clip per epoch."""

    def __init__(self, clips: ClipSet, indices: np.ndarray, segment: int):
        self.clips, self.indices, self.segment = clips, indices, segment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = int(self.indices[i])
        n = self.clips.audio.length(idx)
        start = np.random.randint(0, max(n - self.segment, 0) + 1)  # seeded per worker by Lightning
        wave = fit_length(self.clips.audio.get(idx, start, start + self.segment), self.segment)
        return {"wave": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
                "label": int(self.clips.labels[idx])}


class ClipSegments(Dataset):
    """Each clip as a stack of evenly spaced segments (S, segment)."""

    def __init__(self, clips: ClipSet, indices: np.ndarray, segment: int, hop: int):
        self.clips, self.indices, self.segment, self.hop = clips, indices, segment, hop

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = int(self.indices[i])
        wave = fit_length(self.clips.audio.get(idx), self.segment)
        starts = segment_starts(len(wave), self.segment, self.hop)
        segs = np.stack([wave[s:s + self.segment] for s in starts]).astype(np.float32, copy=False)
        return {"wave": torch.from_numpy(segs), "label": int(self.clips.labels[idx]), "index": idx}


def collate_crops(items):
    return {"wave": torch.stack([it["wave"] for it in items]),
            "label": torch.tensor([it["label"] for it in items], dtype=torch.long)}


def collate_segments(items):
    """Concatenate the segments of several clips; ``clip`` maps each segment to its clip
    position in the batch."""
    return {
        "wave": torch.cat([it["wave"] for it in items]),
        "clip": torch.cat([torch.full((len(it["wave"]),), k, dtype=torch.long) for k, it in enumerate(items)]),
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }


class EvenShards(DistributedSampler):
    """Rank ``rank`` of ``world`` gets indices rank, rank + world, ...: every clip exactly
    once across processes, no padding duplicates (unlike DistributedSampler, whose
    subclass this is only so that Lightning does not wrap it in another one)."""

    def __init__(self, dataset, rank: int, world: int):
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=False)
        self.ids = list(range(rank, len(dataset), world))

    def __iter__(self):
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


class SceneDataModule(L.LightningDataModule):
    """Train / val / test waveform loaders of one fold of a :class:`ClipSet`.

    The validation part is carved from the fold's training part (seeded, stratified),
    never from its test part.  ``batch_size`` is per device: training steps take
    ``batch_size`` segments on each device, evaluation steps ``eval_batch_size`` clips.
    """

    def __init__(self, clips: ClipSet, fold: int, data_cfg):
        super().__init__()
        self.clips, self.fold, self.cfg = clips, fold, data_cfg
        sr = clips.audio.sample_rate
        self.segment = int(round(data_cfg.segment_seconds * sr))
        hop_s = data_cfg.eval_hop_seconds or data_cfg.segment_seconds / 2
        self.eval_hop = max(1, int(round(hop_s * sr)))
        train, self.test_idx = clips.folds[fold]
        self.train_idx, self.val_idx = stratified_split(train, clips.labels, data_cfg.val_fraction,
                                                          data_cfg.fold_seed + fold)

    @property
    def sizes(self) -> dict:
        return {"n_train": len(self.train_idx), "n_val": len(self.val_idx), "n_test": len(self.test_idx)}

    def _loader(self, dataset, batch_size, shuffle=False, collate=collate_segments, drop_last=False, sampler=None):
        workers = self.cfg.num_workers
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, collate_fn=collate,
                          num_workers=workers, persistent_workers=workers > 0, drop_last=drop_last,
                          pin_memory=torch.cuda.is_available())

    def _eval_loader(self, indices, hop=None):
        ds = ClipSegments(self.clips, indices, self.segment, hop or self.eval_hop)
        trainer = getattr(self, "trainer", None)
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = EvenShards(ds, trainer.global_rank, trainer.world_size)
        return self._loader(ds, self.cfg.eval_batch_size or self.cfg.batch_size, sampler=sampler)

    def train_dataloader(self):
        ds = RandomCrops(self.clips, self.train_idx, self.segment)
        # BC learning needs pairs: never a last batch of one
        return self._loader(ds, self.cfg.batch_size, shuffle=True, collate=collate_crops,
                            drop_last=len(ds) > self.cfg.batch_size)

    def val_dataloader(self):
        return self._eval_loader(self.val_idx) if len(self.val_idx) else []

    def test_dataloader(self):
        return self._eval_loader(self.test_idx)

    def stats_dataloader(self):
        """Whole training clips in non-overlapping segments, for the normalisation statistics."""
        return self._eval_loader(self.train_idx, hop=self.segment)
