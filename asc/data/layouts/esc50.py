"""ESC-50 (``meta/esc50.csv``, five official folds, leave-one-fold-out), and CSVs of that
shape such as the ``meta.csv`` written by ``asc synth``."""

from __future__ import annotations

import csv
from pathlib import Path

from asc.data.audio import display_name
from asc.data.base import leave_one_fold_out
from asc.data.files import Listing, index_audio, need_dir
from asc.errors import AscError
from asc.registry import LAYOUTS


@LAYOUTS.register("esc50", on_disk=True)
def list_esc50(root: Path) -> Listing:
    """ESC-50 (``meta/esc50.csv``: filename, fold, target, category; leave-one-fold-out).
    Also reads any CSV of that shape with ``label`` for ``category`` and no ``target``,
    such as the ``meta.csv`` that ``asc synth`` writes."""
    root = need_dir(root, "ESC-50 data set")
    candidates = [root / "meta" / "esc50.csv", root / "esc50.csv", root / "meta.csv"] + sorted(root.glob("meta/*.csv"))
    meta = next((p for p in candidates if p.is_file()), None)
    if meta is None:
        raise AscError(f"meta/esc50.csv not found under {display_name(root)!r}")
    with open(meta, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0]) if rows else set()
    label_col = "category" if "category" in columns else "label"
    if not rows or not {"filename", "fold", label_col} <= columns:
        raise AscError(f"{display_name(meta)} must have the columns filename, fold, target, category")
    if "target" in columns:
        names = {int(r["target"]): r[label_col] for r in rows}
        class_names = [names[t] for t in sorted(names)]
    else:
        class_names = sorted({r[label_col] for r in rows})
    audio = index_audio(root)
    paths, labels, fold_of = [], [], []
    for r in rows:
        name = Path(r["filename"]).name
        if name not in audio:
            raise AscError(f"{r['filename']!r} (listed in {meta.name}) not found under {display_name(root)!r}")
        paths.append(audio[name])
        labels.append(r[label_col])
        fold_of.append(int(r["fold"]))
    return Listing("esc50", root, paths, labels, class_names, leave_one_fold_out(fold_of))
