"""A folder per class (``root/<class>/**/<audio>``), with seeded stratified folds
(``data.folder_folds`` of them, seed ``data.fold_seed``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asc.data.audio import display_name
from asc.data.base import leave_one_fold_out
from asc.data.files import Listing, index_audio, need_dir
from asc.errors import AscError
from asc.registry import LAYOUTS


@LAYOUTS.register("folder", on_disk=True)
def list_folder(root: Path, n_folds: int, seed: int) -> Listing:
    """``root/<class>/<files>`` (any depth below the class folder); seeded stratified folds."""
    root = need_dir(root, "folder-per-class data set")
    class_names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_names) < 2:
        raise AscError(f"{display_name(root)!r} needs one sub-folder per class (found {len(class_names)})")
    paths, labels = [], []
    for c in class_names:
        files = sorted(index_audio(root / c).values())
        if not files:
            raise AscError(f"class folder {display_name(root / c)!r} holds no audio files")
        paths += files
        labels += [c] * len(files)
    label_ids = np.array([class_names.index(l) for l in labels])
    fold_of = np.zeros(len(paths), dtype=int)
    rng = np.random.default_rng(seed)
    for c in range(len(class_names)):
        members = np.flatnonzero(label_ids == c)
        members = members[rng.permutation(len(members))]
        fold_of[members] = np.arange(len(members)) % n_folds + 1
    return Listing("folder", root, paths, labels, class_names, leave_one_fold_out(fold_of))
