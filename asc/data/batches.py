"""What a batch holds and how it is drawn: training crops, evaluation segments, padding.

Every batch is described by *rows* ``(clip id, start sample, size)``: the training crops of
an epoch come from :class:`TrainCrops`, a batch sampler seeded per (seed, epoch), and the
evaluation windows of a clip from :func:`segment_starts`.  The rows are cut either in the
loader (``read=True``: the dataset reads each row from the clip store, a batch carries
``wave``) or on the training device from the fold's audio held there
(:class:`asc.data.device_audio.DeviceAudio`; a batch carries ``rows`` and ``width``).  Both
paths draw the same rows, so they train on the same crops.

A clip shorter than a segment is never stretched with silence that counts as sound: rows
are zero-padded to the batch's width and every batch carries ``length``, the valid samples
of each row, from which the feature pipeline builds a frame mask.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from asc.data.base import ClipSet


def segment_samples(data_cfg, sample_rate: int) -> int | None:
    """Segment length in samples (``data.segment_seconds``), None for whole clips."""
    if data_cfg.segment_seconds is None:
        return None
    return int(round(data_cfg.segment_seconds * sample_rate))


def segment_starts(n_samples: int, segment: int | None, hop: int) -> np.ndarray:
    """Start samples of evenly spaced segments covering a clip (first at 0, last ending at
    the clip's end); one segment for clips no longer than a segment (or ``segment=None``)."""
    if segment is None or n_samples <= segment:
        return np.zeros(1, dtype=np.int64)
    n = math.ceil((n_samples - segment) / hop) + 1
    return np.round(np.linspace(0, n_samples - segment, n)).astype(np.int64)


class TrainCrops(Sampler):
    """Batches of training rows ``(clip, start, size)``: each clip once per epoch in a
    random order, one random crop of at most ``segment`` samples (the whole clip when it is
    shorter, or when ``segment`` is None).

    Order and crop positions come from a generator seeded by ``(seed, epoch)``
    (:meth:`set_epoch`, called by Lightning each epoch), so a resumed run draws the crops
    an uninterrupted one would.  With ``world`` > 1 processes every rank draws the same
    epoch and takes every ``world``-th crop, all ranks the same number of them; each rank's
    batches hold ``batch_size`` crops.  ``drop_last`` drops a last, shorter batch when
    there is more than one (BC learning needs pairs: never a last batch of one).
    """

    def __init__(self, indices: np.ndarray, lengths: np.ndarray, segment: int | None, batch_size: int,
                 drop_last: bool, seed: int, rank: int = 0, world: int = 1):
        self.indices, self.lengths = np.asarray(indices, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
        self.segment, self.batch_size, self.drop_last = segment, int(batch_size), drop_last
        self.seed, self.rank, self.world, self.epoch = int(seed), int(rank), int(world), 0
        self.sampler = self  # Lightning calls set_epoch on a loader's batch_sampler.sampler each epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rows_per_rank(self) -> int:
        return len(self.indices) // self.world  # equal shares: up to world - 1 clips wait for the next epoch

    def _n_batches(self) -> int:
        n = self._rows_per_rank()
        if self.drop_last and n > self.batch_size:
            return n // self.batch_size
        return math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        return self._n_batches()

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = self.indices[rng.permutation(len(self.indices))]
        n = self.lengths[order]
        size = n if self.segment is None else np.minimum(n, self.segment)
        start = np.floor(rng.random(len(order)) * (n - size + 1)).astype(np.int64)
        rows = list(zip(order.tolist(), start.tolist(), size.tolist()))[self.rank::self.world]
        rows = rows[:self._rows_per_rank()]
        for b in range(self._n_batches()):
            yield rows[b * self.batch_size:(b + 1) * self.batch_size]


class Crops(Dataset):
    """Item ``(clip, start, size)``: that crop's label, and with ``read`` its waveform."""

    def __init__(self, clips: ClipSet, read: bool = True):
        self.clips, self.read = clips, read

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, row):
        idx, start, size = (int(v) for v in row)
        item = {"label": int(self.clips.labels[idx]), "rows": [(idx, start, size)]}
        if self.read:
            wave = self.clips.audio.get(idx, start, start + size)
            item["wave"] = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        return item


class ClipSegments(Dataset):
    """Each clip as evenly spaced segments of L = min(clip, segment) samples: rows, and
    with ``read`` their waveforms stacked (S, L)."""

    def __init__(self, clips: ClipSet, indices: np.ndarray, segment: int | None, hop: int, read: bool = True):
        self.clips, self.indices, self.segment, self.hop, self.read = clips, indices, segment, hop, read

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = int(self.indices[i])
        n = self.clips.audio.length(idx)
        size = n if self.segment is None else min(n, self.segment)
        starts = segment_starts(n, self.segment, self.hop)
        item = {"label": int(self.clips.labels[idx]), "index": idx, "rows": [(idx, int(s), size) for s in starts]}
        if self.read:
            wave = self.clips.audio.get(idx)
            item["wave"] = torch.from_numpy(np.stack([wave[s:s + size] for s in starts]).astype(np.float32, copy=False))
        return item


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
    with ``length`` the valid samples of each row.  Items without ``wave`` (the audio is on
    the device) give ``rows`` (R, 3) and ``width`` instead; ``padded`` says whether any row
    is shorter than the batch.  Segment batches add ``clip``
    (each segment's clip position in the batch) and ``index`` (clip ids)."""

    def __init__(self, segments: bool, min_length: int = 0):
        self.segments, self.min_length = segments, min_length

    def __call__(self, items):
        batch = {"label": torch.tensor([it["label"] for it in items])}
        if "wave" in items[0]:
            batch["wave"], batch["length"] = pad_batch([it["wave"] for it in items], self.min_length)
        else:
            rows = torch.tensor([row for it in items for row in it["rows"]], dtype=torch.long)
            batch["rows"], batch["length"] = rows, rows[:, 2].clone()
            batch["width"] = max(int(rows[:, 2].max()), self.min_length)
        # whether any row is padded, known here on the host (the pipeline then needs no frame
        # mask and does not have to ask the device)
        width = batch["wave"].shape[-1] if "wave" in batch else batch["width"]
        batch["padded"] = bool((batch["length"] < width).any())
        if self.segments:
            batch["clip"] = torch.cat([torch.full((len(it["rows"]),), k, dtype=torch.long)
                                       for k, it in enumerate(items)])
            batch["index"] = torch.tensor([it["index"] for it in items], dtype=torch.long)
        return batch


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
