"""LITIS Rouen (19 classes, 3026 clips of 30 s): ``relation_wav_examples.txt`` maps split
ids to files; the 20 official random splits are in ``fold3026-matrices_{Learn,Test}.txt``
(or a MATLAB file with ``indiceMa``/``indiceMt``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asc.data.audio import display_name
from asc.data.files import Listing, index_audio, need_dir
from asc.errors import AscError
from asc.registry import LAYOUTS

LITIS_CLASSES = ("avion", "bus", "busystreet", "cafe", "car", "hall", "hallgare", "kidgame", "market",
                 "metro-paris", "metro-rouen", "poolhall", "quietstreet", "restaurant", "ruepietonne", "shop",
                 "train-ter", "train-tgv", "tubestation")


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


def litis_class(file_name: str) -> str | None:
    """Class of a LITIS file from its name: the *longest* matching class prefix
    (``busystreet12.wav`` is busystreet, not bus)."""
    stem = Path(file_name).name.lower()
    matches = [c for c in LITIS_CLASSES if stem.startswith(c)]
    return max(matches, key=len) if matches else None


@LAYOUTS.register("litis", on_disk=True)
def list_litis(root: Path) -> Listing:
    root = need_dir(root, "LITIS Rouen data set")
    split_files = {p.name: p for p in root.rglob("*") if p.is_file()}
    rel = split_files.get("relation_wav_examples.txt")
    if rel is None:
        raise AscError(f"relation_wav_examples.txt not found under {display_name(root)!r}; LITIS needs it to map "
                       "split ids to files")
    id_to_name = _relation(rel)
    learn_rows, test_rows = _split_rows(root, split_files)
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


def _relation(rel: Path) -> dict[int, str]:
    """{split id: file name} from relation_wav_examples.txt (``<file name> <id>`` lines)."""
    id_to_name: dict[int, str] = {}
    for n, line in enumerate(rel.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise AscError(f"{display_name(rel)} line {n}: expected '<file name> <id>', got {line!r}")
        (idx,) = _ids(parts[-1], f"{display_name(rel)} line {n}")
        id_to_name[idx] = " ".join(parts[:-1])
    return id_to_name


def _split_rows(root: Path, split_files: dict[str, Path]) -> tuple[list[list[int]], list[list[int]]]:
    """The train and test id rows of the 20 splits: from fold3026-matrices_{Learn,Test}.txt,
    else from a MATLAB file holding indiceMa/indiceMt."""
    learn, test = split_files.get("fold3026-matrices_Learn.txt"), split_files.get("fold3026-matrices_Test.txt")
    if learn is not None and test is not None:
        return ([_ids(l, f"{display_name(learn)} line {i}") for i, l in
                 enumerate(learn.read_text().splitlines(), 1) if l.strip()],
                [_ids(l, f"{display_name(test)} line {i}") for i, l in
                 enumerate(test.read_text().splitlines(), 1) if l.strip()])
    mats = [p for name, p in split_files.items() if name.endswith(".mat")]
    if not mats:
        raise AscError(f"no LITIS split files under {display_name(root)!r}: expected fold3026-matrices_Learn.txt "
                       "and fold3026-matrices_Test.txt (or a MATLAB file with indiceMa/indiceMt)")
    return _litis_mat(mats)


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
