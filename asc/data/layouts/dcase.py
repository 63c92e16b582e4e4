"""DCASE acoustic scenes: TUT 2016-2018 (``meta.txt``, ``evaluation_setup/fold{k}_*.txt``) and
TAU Urban Acoustic Scenes 2019/2020 (``meta.csv``, ``evaluation_setup/fold1_*.csv``)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from asc.data.audio import display_name
from asc.data.files import Listing, need_dir, need_file
from asc.errors import AscError
from asc.registry import LAYOUTS


def _read_table(path: Path, header: bool):
    with open(path, newline="", errors="replace") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and any(c.strip() for c in r)]
    if rows and len(rows[0]) == 1 and " " in rows[0][0].strip():  # some copies use spaces
        rows = [r[0].split() for r in rows]
    return rows[1:] if header else rows


def _meta_file(root: Path) -> tuple[Path, bool, str]:
    """(meta file, whether it has a header row, extension of the split files)."""
    if (root / "meta.csv").is_file():
        return root / "meta.csv", True, "csv"
    if (root / "meta.txt").is_file():
        return root / "meta.txt", False, "txt"
    raise AscError(f"neither meta.txt (TUT 2016-2018) nor meta.csv (TAU 2019/2020) in {display_name(root)!r}")


def _labels(meta: Path, header: bool) -> dict[str, str]:
    """{file name: scene label} from the meta file."""
    labels_of: dict[str, str] = {}
    for row in _read_table(meta, header):
        if len(row) < 2:
            raise AscError(f"{display_name(meta)}: row {row!r} has no scene label column")
        labels_of[row[0].strip()] = row[1].strip()
    return labels_of


@LAYOUTS.register("dcase", on_disk=True)
def list_dcase(root: Path) -> Listing:
    """TUT Acoustic Scenes 2016-2018 (``meta.txt``, ``fold{k}_*.txt``) or TAU Urban
    Acoustic Scenes 2019/2020 (``meta.csv``, ``fold1_*.csv``), told apart by what is on disk."""
    root = need_dir(root, "DCASE / TUT / TAU data set")
    setup = root / "evaluation_setup"
    meta, header, ext = _meta_file(root)
    need_dir(setup, "DCASE evaluation_setup folder")
    labels_of = _labels(meta, header)
    class_names = sorted(set(labels_of.values()))
    fold_ids = sorted(int(m.group(1)) for p in setup.iterdir()
                      if (m := re.fullmatch(rf"fold(\d+)_train\.{ext}", p.name)))
    if not fold_ids:
        raise AscError(f"no fold*_train.{ext} files in {display_name(setup)!r}")
    item_of: dict[str, int] = {}
    files: list[str] = []

    def items(path: Path) -> list[int]:
        out = []
        for row in _read_table(need_file(path, "DCASE split file"), header):
            name = row[0].strip()
            if name not in labels_of:
                label = row[1].strip() if len(row) > 1 else None
                if label is None:
                    raise AscError(f"{display_name(path)}: {name!r} is not in {meta.name} and has no label")
                labels_of[name] = label
            if len(row) > 1 and row[1].strip() and row[1].strip() not in class_names:
                raise AscError(f"{display_name(path)}: label {row[1].strip()!r} of {name!r} is not a class of "
                               f"{meta.name} ({', '.join(class_names)})")
            if name not in item_of:
                item_of[name] = len(files)
                files.append(name)
            out.append(item_of[name])
        return out

    folds = {k: (items(setup / f"fold{k}_train.{ext}"), items(setup / f"fold{k}_evaluate.{ext}"))
             for k in fold_ids}
    paths = []
    for name in files:
        p = root / name
        if not p.is_file():
            raise AscError(f"{name!r} (listed in evaluation_setup) not found under {display_name(root)!r}")
        paths.append(p)
    version = "TAU 2019/2020" if ext == "csv" else "TUT 2016-2018"
    return Listing("dcase", root, paths, [labels_of[n] for n in files], class_names, folds, [version])
