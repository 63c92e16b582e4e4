"""What every data set loader produces: a :class:`ClipSet`.

A ClipSet is the list of clips (an item name each, a label, fold membership), the class
names, and an :class:`AudioStore` that returns a clip's waveform at the configured rate.
Loaders differ only in how they build it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class AudioStore(Protocol):
    sample_rate: int

    def __len__(self) -> int: ...

    def length(self, index: int) -> int:
        """Samples in clip ``index``."""

    def get(self, index: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``start:stop`` of clip ``index``: float32 at ``sample_rate`` (reads only
        that part, so a training crop does not decode or convert the whole clip)."""


class ArrayStore:
    """Equal-length clips held as one (n_clips, n_samples) float32 array."""

    def __init__(self, waves: np.ndarray, sample_rate: int):
        self.waves, self.sample_rate = waves, sample_rate

    def __len__(self) -> int:
        return len(self.waves)

    def length(self, index: int) -> int:
        return self.waves.shape[1]

    def get(self, index: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.waves[index, start:stop]


@dataclass
class ClipSet:
    name: str
    class_names: list[str]
    items: list[str]  # file path (relative to the data root) or a synthetic clip id
    labels: np.ndarray  # (n_clips,) int64
    folds: dict[int, tuple[np.ndarray, np.ndarray]]  # fold -> (train indices, test indices)
    audio: AudioStore
    events: list[list[dict]] | None = None  # per clip, synthetic data only
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def check(self) -> None:
        """Internal consistency: labels in range, folds disjoint and in range."""
        n = len(self.items)
        assert len(self.labels) == n and len(self.audio) == n
        assert self.labels.min() >= 0 and self.labels.max() < len(self.class_names)
        for k, (train, test) in self.folds.items():
            assert len(np.intersect1d(train, test)) == 0, f"fold {k}: train and test overlap"
            assert train.max() < n and test.max() < n


def leave_one_fold_out(fold_of: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Folds from each clip's fold number: fold k tests on its clips, trains on the rest."""
    fold_of = np.asarray(fold_of)
    ids = np.arange(len(fold_of))
    return {int(k): (ids[fold_of != k], ids[fold_of == k]) for k in np.unique(fold_of)}


def stratified_split(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    """Split ``indices`` into (rest, held_out) with ``fraction`` of each class held out
    (at least one per class when the class has two or more clips and fraction > 0)."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels[indices]):
        members = indices[labels[indices] == c]
        members = members[rng.permutation(len(members))]
        k = int(round(fraction * len(members)))
        if fraction > 0 and k == 0 and len(members) >= 2:
            k = 1
        held.extend(members[:k].tolist())
    held_arr = np.array(sorted(held), dtype=np.int64)
    rest = np.setdiff1d(indices, held_arr)
    return rest, held_arr


def attention_clip_ids(clips: ClipSet, indices: np.ndarray, per_class: int) -> list[int]:
    """A fixed set of clips: the first ``per_class`` of each class among ``indices``."""
    chosen = []
    for c in range(len(clips.class_names)):
        chosen += [int(i) for i in indices[clips.labels[indices] == c][:per_class]]
    return chosen
