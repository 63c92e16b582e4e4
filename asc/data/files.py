"""Loaders for data sets on disk, each in its official layout (see README.md, *Real data sets*).

Every loader parses its metadata into a :class:`Listing` (files, labels, folds); then
:func:`finish` checks the files exist, decodes them through the audio cache, and applies
``data.on_bad_file`` (``error``: stop with every problem file listed; ``skip``: log and
count them, and drop them from every fold).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asc.data.audio import AUDIO_EXTENSIONS, AudioCache, display_name
from asc.data.base import ClipSet, leave_one_fold_out
from asc.errors import AscError
from asc.registry import LAYOUTS, call_with

log = logging.getLogger("asc.data")

LITIS_CLASSES = ("avion", "bus", "busystreet", "cafe", "car", "hall", "hallgare", "kidgame", "market",
                 "metro-paris", "metro-rouen", "poolhall", "quietstreet", "restaurant", "ruepietonne", "shop",
                 "train-ter", "train-tgv", "tubestation")


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


def _need_dir(root: Path, what: str) -> Path:
    if not root.is_dir():
        raise AscError(f"data.root {display_name(root)!r} is not a folder; point data.root at the unpacked {what}")
    return root


def _need_file(path: Path, what: str) -> Path:
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


def _ids(text: str, where: str) -> list[int]:
    """Whitespace-separated ids, possibly written as floats (1.0000000e+00)."""
    out = []
    for tok in text.replace(",", " ").split():
        try:
            value = float(tok)
        except ValueError:
            raise AscError(f"{where}: {tok!r} is not a number; is this the right split file?") from None
        if value != int(value):
            raise AscError(f"{where}: id {tok} is not a whole number")
        out.append(int(value))
    return out


# ------------------------------------------------------------------------- LITIS Rouen
def litis_class(file_name: str) -> str | None:
    """Class of a LITIS file from its name: the *longest* matching class prefix
    (``busystreet12.wav`` is busystreet, not bus)."""
    stem = Path(file_name).name.lower()
    matches = [c for c in LITIS_CLASSES if stem.startswith(c)]
    return max(matches, key=len) if matches else None


@LAYOUTS.register("litis", on_disk=True)
def list_litis(root: Path) -> Listing:
    root = _need_dir(root, "LITIS Rouen data set")
    split_files = {p.name: p for p in root.rglob("*") if p.is_file()}
    rel = split_files.get("relation_wav_examples.txt")
    if rel is None:
        raise AscError(f"relation_wav_examples.txt not found under {display_name(root)!r}; LITIS needs it to map "
                       "split ids to files")
    id_to_name: dict[int, str] = {}
    for n, line in enumerate(rel.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise AscError(f"{display_name(rel)} line {n}: expected '<file name> <id>', got {line!r}")
        (idx,) = _ids(parts[-1], f"{display_name(rel)} line {n}")
        id_to_name[idx] = " ".join(parts[:-1])
    learn, test = split_files.get("fold3026-matrices_Learn.txt"), split_files.get("fold3026-matrices_Test.txt")
    if learn is not None and test is not None:
        learn_rows = [_ids(l, f"{display_name(learn)} line {i}") for i, l in
                      enumerate(learn.read_text().splitlines(), 1) if l.strip()]
        test_rows = [_ids(l, f"{display_name(test)} line {i}") for i, l in
                     enumerate(test.read_text().splitlines(), 1) if l.strip()]
    else:
        mats = [p for name, p in split_files.items() if name.endswith(".mat")]
        if not mats:
            raise AscError(f"no LITIS split files under {display_name(root)!r}: expected fold3026-matrices_Learn.txt "
                           "and fold3026-matrices_Test.txt (or a MATLAB file with indiceMa/indiceMt)")
        learn_rows, test_rows = _litis_mat(mats)
    if len(learn_rows) != len(test_rows):
        raise AscError(f"LITIS split files disagree: {len(learn_rows)} train rows vs {len(test_rows)} test rows")
    audio = index_audio(root)
    names = sorted(set(id_to_name.values()))
    item_of = {n: i for i, n in enumerate(names)}
    paths, labels = [], []
    for n in names:
        label = litis_class(n)
        if label is None:
            raise AscError(f"{n!r} in {display_name(rel)} does not start with a LITIS class name "
                           f"({', '.join(LITIS_CLASSES)})")
        if n not in audio:
            raise AscError(f"{n!r} (listed in relation_wav_examples.txt) not found under "
                           f"{display_name(root)!r}; is the audio unpacked there?")
        paths.append(audio[n])
        labels.append(label)
    folds = {}
    for k, (tr, te) in enumerate(zip(learn_rows, test_rows), 1):
        for idx in tr + te:
            if idx not in id_to_name:
                raise AscError(f"split {k} names id {idx}, which relation_wav_examples.txt does not list; "
                               "are the split files and the relation file from the same copy?")
        folds[k] = ([item_of[id_to_name[i]] for i in tr], [item_of[id_to_name[i]] for i in te])
    return Listing("litis", root, paths, labels, list(LITIS_CLASSES), folds)


def _litis_mat(mats: list[Path]):
    from scipy.io import loadmat

    for mat in mats:
        try:
            m = loadmat(mat)
        except Exception:  # noqa: BLE001 - not a readable MATLAB file; try the next
            continue
        if "indiceMa" in m and "indiceMt" in m:
            return ([np.asarray(r).astype(int).ravel().tolist() for r in m["indiceMa"]],
                    [np.asarray(r).astype(int).ravel().tolist() for r in m["indiceMt"]])
    raise AscError(f"none of {[display_name(p) for p in mats]} holds indiceMa/indiceMt split rows")


# ------------------------------------------------------------------------- DCASE / TUT / TAU
def _read_table(path: Path, header: bool):
    with open(path, newline="", errors="replace") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and any(c.strip() for c in r)]
    if rows and len(rows[0]) == 1 and " " in rows[0][0].strip():  # some copies use spaces
        rows = [r[0].split() for r in rows]
    return rows[1:] if header else rows


@LAYOUTS.register("dcase", on_disk=True)
def list_dcase(root: Path) -> Listing:
    """TUT Acoustic Scenes 2016-2018 (``meta.txt``, ``fold{k}_*.txt``) or TAU Urban
    Acoustic Scenes 2019/2020 (``meta.csv``, ``fold1_*.csv``), told apart by what is on disk."""
    root = _need_dir(root, "DCASE / TUT / TAU data set")
    setup = root / "evaluation_setup"
    if (root / "meta.csv").is_file():
        meta, header, ext = root / "meta.csv", True, "csv"
    elif (root / "meta.txt").is_file():
        meta, header, ext = root / "meta.txt", False, "txt"
    else:
        raise AscError(f"neither meta.txt (TUT 2016-2018) nor meta.csv (TAU 2019/2020) in {display_name(root)!r}")
    _need_dir(setup, "DCASE evaluation_setup folder")
    labels_of: dict[str, str] = {}
    for row in _read_table(meta, header):
        if len(row) < 2:
            raise AscError(f"{display_name(meta)}: row {row!r} has no scene label column")
        labels_of[row[0].strip()] = row[1].strip()
    class_names = sorted(set(labels_of.values()))
    fold_ids = sorted(int(m.group(1)) for p in setup.iterdir()
                      if (m := re.fullmatch(rf"fold(\d+)_train\.{ext}", p.name)))
    if not fold_ids:
        raise AscError(f"no fold*_train.{ext} files in {display_name(setup)!r}")
    item_of: dict[str, int] = {}
    files: list[str] = []

    def items(path: Path) -> list[int]:
        out = []
        for row in _read_table(_need_file(path, "DCASE split file"), header):
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


# ------------------------------------------------------------------------- ESC-50
@LAYOUTS.register("esc50", on_disk=True)
def list_esc50(root: Path) -> Listing:
    """ESC-50 (``meta/esc50.csv``: filename, fold, target, category; leave-one-fold-out).
    Also reads any CSV of that shape with ``label`` for ``category`` and no ``target``,
    such as the ``meta.csv`` that ``asc synth`` writes."""
    root = _need_dir(root, "ESC-50 data set")
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


# ------------------------------------------------------------------------- folder per class
@LAYOUTS.register("folder", on_disk=True)
def list_folder(root: Path, n_folds: int, seed: int) -> Listing:
    """``root/<class>/<files>`` (any depth below the class folder); seeded stratified folds."""
    root = _need_dir(root, "folder-per-class data set")
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


# ------------------------------------------------------------------------- shared finish
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
