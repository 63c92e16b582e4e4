"""Data sets: every loader returns a :class:`~asc.data.base.ClipSet`."""

from __future__ import annotations

import numpy as np

from asc.data.base import ArrayStore, ClipSet, leave_one_fold_out
from asc.registry import LAYOUTS


@LAYOUTS.register("synthetic")  # in memory: a function data_cfg -> ClipSet
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
    folds = leave_one_fold_out([gen.fold(i) for i in range(len(gen))])
    items = [f"synthetic-{gen.seed}-{i:05d}" for i in range(len(gen))]
    return ClipSet("synthetic", gen.class_names, items, labels, folds, ArrayStore(waves, gen.sample_rate), events,
                   info={"clip_seconds": gen.clip_seconds})


def load_files(data_cfg) -> ClipSet:
    from asc.data.files import finish, load_listing

    return finish(load_listing(data_cfg, data_cfg.fold_seed), data_cfg)


def load_clipset(data_cfg) -> ClipSet:
    """The ClipSet of the layout registered as ``data_cfg.name`` (asc.registry.LAYOUTS): the
    synthetic scenes, or a data set under ``data_cfg.root`` (litis, dcase, esc50, folder;
    registered with on_disk=True) decoded through the audio cache."""
    load = LAYOUTS.get(data_cfg.name)
    clips = load_files(data_cfg) if LAYOUTS.meta(data_cfg.name).get("on_disk") else load(data_cfg)
    clips.check()
    return clips
