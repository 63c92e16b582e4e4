"""Data sets: every loader returns a :class:`~asc.data.base.ClipSet`."""

from __future__ import annotations

import numpy as np

from asc.data.base import ArrayStore, ClipSet
from asc.errors import AscError


def load_synthetic(data_cfg) -> ClipSet:
    from asc.data.synthetic import from_config

    gen = from_config(data_cfg)
    waves = np.empty((len(gen), gen.n_samples), dtype=np.float32)
    events = []
    for i in range(len(gen)):
        clip = gen[i]
        waves[i] = clip.wave
        events.append([e.as_dict() for e in clip.events])
    labels = np.array([gen.label(i) for i in range(len(gen))], dtype=np.int64)
    fold_of = np.array([gen.fold(i) for i in range(len(gen))])
    all_idx = np.arange(len(gen))
    folds = {k: (all_idx[fold_of != k], all_idx[fold_of == k]) for k in range(1, gen.n_folds + 1)}
    items = [f"synthetic-{gen.seed}-{i:05d}" for i in range(len(gen))]
    return ClipSet("synthetic", gen.class_names, items, labels, folds, ArrayStore(waves, gen.sample_rate), events,
                   info={"clip_seconds": gen.clip_seconds})


LOADERS = {"synthetic": load_synthetic}


def load_clipset(data_cfg) -> ClipSet:
    """The ClipSet named by ``data_cfg.name``."""
    try:
        loader = LOADERS[data_cfg.name]
    except KeyError:
        raise AscError(f"data.name={data_cfg.name!r} has no loader; available: {', '.join(LOADERS)}") from None
    clips = loader(data_cfg)
    clips.check()
    return clips
