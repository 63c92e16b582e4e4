"""The DataModule of one fold: waveform loaders, and the feature pipeline that turns their
batches into spectrograms on the training device.

Training yields random segment crops; evaluation yields every clip exactly once, cut into
evenly spaced segments that cover the whole clip, so that the LightningModule can
aggregate segment probabilities into a clip decision (:mod:`asc.data.batches`).  The
DataModule's ``on_after_batch_transfer`` runs its :class:`~asc.pipeline.FeaturePipeline`
on the training device (BC mix, nnAudio spectrogram, band standardiser, spectrogram
augmentation), so the LightningModule receives spectrograms.  The band statistics are
fitted on the fold's training clips before the first batch (summed across DDP ranks) and
kept in the DataModule's ``state_dict``, which Lightning stores in every checkpoint under
the class name ``SceneDataModule`` (:data:`asc.checkpoints.DATAMODULE_KEY`).

With ``data.on_device`` the fold's audio is held on the training device
(:class:`~asc.data.device_audio.DeviceAudio`): the loaders then yield only rows (clip,
start, size), drawn exactly as in the reading path, and the batch is cut on the device.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from asc.data.base import ClipSet, stratified_split
from asc.data.batches import ClipSegments, Collate, Crops, EvenShards, TrainCrops, segment_samples
from asc.data.device_audio import DeviceAudio, audio_bytes, use_device_audio
from asc.pipeline import FeaturePipeline


class SceneDataModule(L.LightningDataModule):
    """Train / val / test loaders of one fold of a :class:`ClipSet`, and its feature pipeline.

    The validation part is carved from the fold's training part (seeded, stratified),
    never from its test part.  ``batch_size`` is per device: training steps take
    ``batch_size`` segments on each device, evaluation steps ``eval_batch_size`` clips.

    Parameters
    ----------
    clips : ClipSet
    fold : int
    cfg : DictConfig
        The experiment config: ``data`` for the loaders, ``seed`` (with the fold) for the
        training crops; ``features`` and ``augment`` for the pipeline (``self.pipeline``).
    """

    def __init__(self, clips: ClipSet, fold: int, cfg):
        super().__init__()  # no save_hyperparameters: it would overwrite the LightningModule's
        self.clips, self.fold, self.data_cfg = clips, fold, cfg.data
        self.crop_seed = int(cfg.seed) * 1000 + int(fold)
        self.pipeline = FeaturePipeline(cfg, len(clips.class_names))
        sr = clips.audio.sample_rate
        self.segment = segment_samples(self.data_cfg, sr)
        hop_s = self.data_cfg.eval_hop_seconds or (self.data_cfg.segment_seconds or 0) / 2
        self.eval_hop = max(1, int(round(hop_s * sr)))
        train, self.test_idx = clips.folds[fold]
        self.train_idx, self.val_idx = stratified_split(train, clips.labels, self.data_cfg.val_fraction,
                                                          self.data_cfg.fold_seed + fold)
        self.on_device = self.data_cfg.on_device == "on"  # auto is decided in setup, on the trainer's device
        self.device_audio: DeviceAudio | None = None
        self._ready_on: torch.device | None = None  # where the pipeline last was made ready (see ready)

    @property
    def sizes(self) -> dict:
        return {"n_train": len(self.train_idx), "n_val": len(self.val_idx), "n_test": len(self.test_idx)}

    @property
    def fold_indices(self) -> np.ndarray:
        return np.concatenate([self.train_idx, self.val_idx, self.test_idx])

    def setup(self, stage: str) -> None:
        # decided once per fold: setup runs again for validate/test, when the audio already
        # held on the device would make the free memory look smaller
        if self.data_cfg.on_device != "auto" or self.device_audio is not None:
            return
        device = self.trainer.strategy.root_device
        self.on_device, line = use_device_audio("auto", device, audio_bytes(self.clips.audio, self.fold_indices),
                                                self.data_cfg.on_device_max_fraction)
        if line and self.trainer.global_rank == 0:
            print(line)

    # ---------------------------------------------------------------- loaders
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset, batch_size=None, segments=True, sampler=None, batch_sampler=None):
        workers = 0 if self.on_device else self.data_cfg.num_workers  # rows only: nothing to read
        if batch_sampler is not None:
            batch_size = 1  # DataLoader's default, the only value it accepts beside a batch sampler
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, batch_sampler=batch_sampler,
                          collate_fn=Collate(segments, self.segment or 0), num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available() and not self.on_device)

    def _eval_loader(self, indices, hop=None):
        ds = ClipSegments(self.clips, indices, self.segment, hop or self.eval_hop, read=not self.on_device)
        rank, world = self._world()
        sampler = EvenShards(ds, rank, world) if world > 1 else None
        return self._loader(ds, self.data_cfg.eval_batch_size or self.data_cfg.batch_size, sampler=sampler)

    def train_dataloader(self):
        rank, world = self._world()
        lengths = np.array([self.clips.audio.length(i) for i in range(len(self.clips))], dtype=np.int64)
        crops = TrainCrops(self.train_idx, lengths, self.segment, self.data_cfg.batch_size, drop_last=True,
                           seed=self.crop_seed, rank=rank, world=world)
        return self._loader(Crops(self.clips, read=not self.on_device), segments=False, batch_sampler=crops)

    def val_dataloader(self):
        return self._eval_loader(self.val_idx) if len(self.val_idx) else []

    def test_dataloader(self):
        return self._eval_loader(self.test_idx)

    def stats_dataloader(self):
        """Whole training clips in evenly spaced segments at most one segment apart, for the
        normalisation statistics (under DDP, this rank's share of them).  The last segment
        ends at the clip's end, so where a clip is not a whole number of segments they
        overlap (a 10 s clip in 4 s segments starts them at 0, 3 and 6 s: 2 s counted
        twice).  Kept as is: changing it would change every fitted statistic, and so every
        result measured so far, for a slight reweighting of frames."""
        return self._eval_loader(self.train_idx, hop=self.segment or 1)

    # ---------------------------------------------------------------- on the device
    def waves(self, batch: dict, device: torch.device) -> dict:
        """``batch`` on ``device`` with ``wave`` and ``length``: cut from the audio held on
        the device when the batch carries only rows."""
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        if "rows" in batch:
            if self.device_audio is None or self.device_audio.device != device:
                self.device_audio = DeviceAudio(self.clips.audio, self.fold_indices, device)
            batch = self.device_audio.cut(batch)
        return batch

    def fit_band_stats(self, device: torch.device) -> None:
        """Fit the pipeline's band statistics on the fold's training clips (never the
        test split), on ``device``; under DDP every rank takes its share and the sums are
        added across ranks, so all ranks hold the statistics of all training clips."""
        reduce = torch.distributed.all_reduce if self._world()[1] > 1 else None  # sums in place
        batches = (self.waves(b, device) for b in self.stats_dataloader())
        self.pipeline.to(device).fit(batches, device, reduce)

    def ready(self, device: torch.device) -> None:
        """The pipeline on ``device`` with fitted band statistics (a resumed run or a
        checkpoint restored them).  Called at fit start on every rank (the DDP reduce needs
        them all at the same point) and, for a lone validate/test, on the first batch.
        Outside inference mode: buffers made under it could not be restored into later."""
        if self._ready_on == device:
            return  # every batch after the first: no look at the statistics (a device sync on a GPU)
        with torch.inference_mode(False), torch.no_grad():
            if self.pipeline.norm.mean.device != device:
                self.pipeline.to(device)
            if not self.pipeline.fitted:
                self.fit_band_stats(device)
        self._ready_on = device

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        device = batch["label"].device
        batch = self.waves(batch, device)
        self.ready(device)
        # mixing and augmentation only while fitting: not in the sanity check, validation or test
        return self.pipeline.prepare(batch, training=self.trainer.training)

    def state_dict(self) -> dict:
        return {"band_stats": self.pipeline.stats_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.pipeline.load_stats_state(state_dict["band_stats"])
        self._ready_on = None
