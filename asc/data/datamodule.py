"""Waveform batches for one fold.

Training yields random segment crops; evaluation yields every clip exactly once, cut into
evenly spaced segments that cover the whole clip, so that the LightningModule can
aggregate segment probabilities into a clip decision.  Spectrograms are *not* computed
here: the LightningModule computes them (and the BC mix) on the training device in
``on_after_batch_transfer``.

A clip shorter than a segment is never stretched with silence that counts as sound: it is
zero-padded to the batch's shape and every batch carries ``length``, the valid samples of
each row, from which the module builds a frame mask (padding stays out of pooling,
attention, the recurrent layers and the band statistics).  ``segment=None`` feeds every
clip whole (bag training, for labels that come from a few short events): batches are
padded to their longest clip.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from asc.data.base import ClipSet, stratified_split


def segment_starts(n_samples: int, segment: int | None, hop: int) -> np.ndarray:
    """Start samples of evenly spaced segments covering a clip (first at 0, last ending at
    the clip's end); one segment for clips no longer than a segment (or ``segment=None``)."""
    if segment is None or n_samples <= segment:
        return np.zeros(1, dtype=np.int64)
    n = math.ceil((n_samples - segment) / hop) + 1
    return np.round(np.linspace(0, n_samples - segment, n)).astype(np.int64)


def segment_taper(n: int):
    """Overlap-add weights of a segment's ``n`` frames: a Hann taper, never zero.  Where
    segments overlap, each frame is taken mostly from the segment that has it near its
    middle; a segment's edge frames (distorted by padding, often given odd attention)
    count little there, so segment boundaries leave no spikes or dips."""
    i = torch.arange(n, dtype=torch.float32)
    return torch.sin(math.pi * (i + 0.5) / n) ** 2


def stitch_segments(pieces, n_frames: int):
    """Per-frame values of overlapping segments stitched over a clip of ``n_frames``
    frames: ``pieces`` holds ``(first_frame, values)`` per segment, ``values`` (L, ...) a
    tensor; the result (n_frames, ...) is the :func:`segment_taper`-weighted mean of the
    segments covering each frame (0 where none does).  A segment's values that sum to 1
    keep that level: uniform attention stays flat at 1/L."""
    out = weight = None
    for first, values in pieces:
        keep = max(0, min(len(values), n_frames - first))
        values, w = values[:keep], segment_taper(len(values))[:keep]
        if out is None:
            out = torch.zeros((n_frames, *values.shape[1:]))
            weight = torch.zeros(n_frames)
        out[first:first + len(values)] += values * w.reshape(-1, *([1] * (values.dim() - 1)))
        weight[first:first + len(values)] += w
    return out / weight.clamp_min(1e-12).reshape(-1, *([1] * (out.dim() - 1)))


class RandomCrops(Dataset):
    """One random crop of at most ``segment`` samples of each clip per epoch (the whole
    clip when it is shorter, or when ``segment`` is None)."""

    def __init__(self, clips: ClipSet, indices: np.ndarray, segment: int | None):
        self.clips, self.indices, self.segment = clips, indices, segment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = int(self.indices[i])
        n = self.clips.audio.length(idx)
        size = n if self.segment is None else min(n, self.segment)
        start = np.random.randint(0, n - size + 1)  # seeded per worker by Lightning
        wave = self.clips.audio.get(idx, start, start + size)
        return {"wave": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
                "label": int(self.clips.labels[idx])}


class ClipSegments(Dataset):
    """Each clip as a stack of evenly spaced segments (S, L), L = min(clip, segment)."""

    def __init__(self, clips: ClipSet, indices: np.ndarray, segment: int | None, hop: int):
        self.clips, self.indices, self.segment, self.hop = clips, indices, segment, hop

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = int(self.indices[i])
        wave = self.clips.audio.get(idx)
        size = len(wave) if self.segment is None else min(len(wave), self.segment)
        starts = segment_starts(len(wave), self.segment, self.hop)
        segs = np.stack([wave[s:s + size] for s in starts]).astype(np.float32, copy=False)
        return {"wave": torch.from_numpy(segs), "label": int(self.clips.labels[idx]), "index": idx}


def pad_batch(waves: list[torch.Tensor], min_length: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack waveforms of shape (..., N_i) zero-padded at the end to the longest (at least
    ``min_length``); returns (batch, lengths of the rows)."""
    n = max([w.shape[-1] for w in waves] + [min_length])
    rows = [w.reshape(-1, w.shape[-1]) for w in waves]
    out = torch.zeros(sum(len(r) for r in rows), n)
    lengths = torch.empty(len(out), dtype=torch.long)
    k = 0
    for r in rows:
        out[k:k + len(r), :r.shape[1]] = r
        lengths[k:k + len(r)] = r.shape[1]
        k += len(r)
    return out, lengths


class Collate:
    """Batches of crops (``segments=False``) or of whole clips' segments.  Rows are padded
    to ``min_length`` samples (the segment: fixed shapes) or to the batch's longest row,
    with ``length`` the valid samples of each row.  Segment batches add ``clip`` (each
    segment's clip position in the batch) and ``index`` (clip ids)."""

    def __init__(self, segments: bool, min_length: int = 0):
        self.segments, self.min_length = segments, min_length

    def __call__(self, items):
        wave, length = pad_batch([it["wave"] for it in items], self.min_length)
        batch = {"wave": wave, "length": length, "label": torch.tensor([it["label"] for it in items])}
        if self.segments:
            batch["clip"] = torch.cat([torch.full((len(it["wave"]),), k, dtype=torch.long)
                                       for k, it in enumerate(items)])
            batch["index"] = torch.tensor([it["index"] for it in items], dtype=torch.long)
        return batch


def segment_samples(data_cfg, sample_rate: int) -> int | None:
    """Segment length in samples (``data.segment_seconds``), None for whole clips."""
    if data_cfg.segment_seconds is None:
        return None
    return int(round(data_cfg.segment_seconds * sample_rate))


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
        self.segment = segment_samples(data_cfg, sr)
        hop_s = data_cfg.eval_hop_seconds or (data_cfg.segment_seconds or 0) / 2
        self.eval_hop = max(1, int(round(hop_s * sr)))
        train, self.test_idx = clips.folds[fold]
        self.train_idx, self.val_idx = stratified_split(train, clips.labels, data_cfg.val_fraction,
                                                          data_cfg.fold_seed + fold)

    @property
    def sizes(self) -> dict:
        return {"n_train": len(self.train_idx), "n_val": len(self.val_idx), "n_test": len(self.test_idx)}

    def _loader(self, dataset, batch_size, shuffle=False, segments=True, drop_last=False, sampler=None):
        workers = self.cfg.num_workers
        collate = Collate(segments, self.segment or 0)
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
        return self._loader(ds, self.cfg.batch_size, shuffle=True, segments=False,
                            drop_last=len(ds) > self.cfg.batch_size)

    def val_dataloader(self):
        return self._eval_loader(self.val_idx) if len(self.val_idx) else []

    def test_dataloader(self):
        return self._eval_loader(self.test_idx)

    def stats_dataloader(self):
        """Whole training clips in non-overlapping segments, for the normalisation statistics."""
        return self._eval_loader(self.train_idx, hop=self.segment or 1)
