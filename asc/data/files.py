"""Data sets on disk: what every layout shares.

Each layout's loader (asc/data/layouts/, one module per official layout, see README.md,
*Real data sets*) parses its metadata into a :class:`Listing` (files, labels, folds); then
:func:`finish` checks the files exist, decodes them through the audio cache, and applies
``data.on_bad_file`` (``error``: stop with every problem file listed; ``skip``: log and
count them, and drop them from every fold).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asc.data.audio import AUDIO_EXTENSIONS, AudioCache, display_name
from asc.data.base import ClipSet
from asc.errors import AscError
from asc.registry import LAYOUTS, call_with

log = logging.getLogger("asc.data")


@dataclass
class Listing:
    """What a loader's metadata says, before any audio is read."""

    name: str
    root: Path
    paths: list[Path]  # absolute
    labels: list[str]
    class_names: list[str]
    folds: dict[int, tuple]  # fold -> (train item ids, test item ids), lists or arrays
    notes: list[str] = field(default_factory=list)


def need_dir(root: Path, what: str) -> Path:
    if not root.is_dir():
        raise AscError(f"data.root {display_name(root)!r} is not a folder; point data.root at the unpacked {what}")
    return root


def need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise AscError(f"{what} {display_name(path)!r} not found; is data.root the unpacked data set, "
                       "with its metadata files?")
    return path


def index_audio(root: Path) -> dict[str, Path]:
    """Audio files anywhere under ``root`` by file name (copies of archives differ in
    folder layout).  A name found twice keeps the first in sorted order."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if Path(f).suffix.lower() in AUDIO_EXTENSIONS:
                found.setdefault(f, Path(dirpath) / f)
    return found


def cache_dir_for(data_cfg, root: Path) -> Path:
    """``data.cache_dir``, else the user's cache folder (``$XDG_CACHE_HOME/asc``, default
    ``~/.cache/asc``): never inside the data set, which may be shared or read-only.  Cache
    files are keyed by the files' paths, sizes and times, so data sets do not mix."""
    if data_cfg.cache_dir:
        return Path(data_cfg.cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "asc"


def decode(listing: Listing, data_cfg, progress: bool = True):
    cache = AudioCache(listing.paths, data_cfg.sample_rate, cache_dir_for(data_cfg, listing.root), listing.name,
                       workers=max(1, data_cfg.num_workers) if data_cfg.num_workers else None)
    return cache.load(progress)


def finish(listing: Listing, data_cfg, progress: bool = True) -> ClipSet:
    """Decode through the cache, apply ``data.on_bad_file``, build the ClipSet."""
    store, index = decode(listing, data_cfg, progress)
    unknown = sorted({l for l in listing.labels if l not in listing.class_names})
    if unknown:
        raise AscError(f"label(s) {unknown} are not in the class list of {listing.name}; check the metadata")
    bad = [(p, e["problem"]) for p, e in zip(listing.paths, index) if e["problem"]]
    if bad:
        lines = "\n".join(f"  {display_name(p)}: {why}" for p, why in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        if data_cfg.on_bad_file == "error":
            raise AscError(f"{len(bad)} unusable audio file(s) in {display_name(listing.root)}:\n{lines}{more}\n"
                           "fix or remove them, or set data.on_bad_file=skip to leave them out "
                           "(run `asc data check` for a full report)")
        log.warning("skipping %d unusable audio file(s):\n%s%s", len(bad), lines, more)
        print(f"warning: skipped {len(bad)} unusable audio file(s) (data.on_bad_file=skip):\n{lines}{more}")
    keep = np.array([not e["problem"] for e in index])
    if not keep.any():
        raise AscError(f"no usable audio files in {display_name(listing.root)}")
    new_id = np.cumsum(keep) - 1
    folds = {}
    for k, (tr, te) in listing.folds.items():
        tr = np.array([new_id[i] for i in tr if keep[i]], dtype=np.int64)
        te = np.array([new_id[i] for i in te if keep[i]], dtype=np.int64)
        if len(tr) and len(te):
            folds[k] = (tr, te)
    labels = np.array([listing.class_names.index(l) for l, k in zip(listing.labels, keep) if k], dtype=np.int64)
    items = [str(p.relative_to(listing.root)) if p.is_relative_to(listing.root) else str(p)
             for p, k in zip(listing.paths, keep) if k]
    return ClipSet(listing.name, listing.class_names, items, labels, folds, store.subset(keep),
                   info={"skipped": [(display_name(p), why) for p, why in bad], "notes": listing.notes})


def load_listing(data_cfg, seed: int = 0) -> Listing:
    """The listing of the on-disk layout registered as ``data_cfg.name`` (asc.registry.LAYOUTS,
    on_disk=True: a function of those of root, n_folds, seed, data_cfg it needs -> Listing)."""
    list_files = LAYOUTS.get(data_cfg.name)
    if not LAYOUTS.meta(data_cfg.name).get("on_disk"):
        raise AscError(f"data.name={data_cfg.name!r} is not a file-based data set")
    return call_with(list_files, root=Path(data_cfg.root).expanduser(), n_folds=data_cfg.folder_folds, seed=seed,
                     data_cfg=data_cfg)
