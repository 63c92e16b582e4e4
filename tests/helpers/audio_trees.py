"""Small data set trees in each official layout, built on the fly with generated audio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

# (sample rate, channels, format, subtype): a mix of what real copies contain
VARIANTS = [(22050, 1, "WAV", "PCM_16"), (44100, 2, "WAV", "PCM_24"), (16000, 1, "WAV", "FLOAT"),
            (48000, 1, "FLAC", "PCM_16"), (8000, 1, "WAV", "PCM_U8"), (32000, 2, "WAV", "PCM_32"),
            (22050, 1, "OGG", "VORBIS")]


def write_clip(path: Path, seed: int, seconds: float = 1.0, variant: int | None = None) -> Path:
    sr, ch, fmt, subtype = VARIANTS[(seed if variant is None else variant) % len(VARIANTS)]
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.05 * rng.standard_normal(len(t))
    x = np.stack([x] * ch, axis=1) if ch > 1 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(os.fsencode(path), x.astype(np.float32), sr, format=fmt, subtype=subtype)
    return path


def make_litis(root: Path, float_ids: bool = True, mat: bool = False) -> dict:
    """LITIS layout: confusable class names, audio in a nested folder, 2 splits."""
    names = ["bus1.wav", "bus2.wav", "busystreet1.wav", "busystreet2.wav", "hall1.wav", "hall2.wav",
             "hallgare1.wav", "hallgare2.wav", "metro-paris1.wav", "metro-paris2.wav"]
    for i, n in enumerate(names):
        write_clip(root / "data" / "sound" / n, i)
    (root / "relation_wav_examples.txt").write_text("".join(f"{n} {i + 1}\n" for i, n in enumerate(names)))
    learn = [[1, 3, 5, 7, 9, 2, 4], [2, 4, 6, 8, 10, 1, 3]]
    test = [[6, 8, 10], [5, 7, 9]]
    fmt = (lambda v: f"{float(v):.7e}") if float_ids else str
    if mat:
        from scipy.io import savemat

        savemat(root / "litis_splits.mat", {"indiceMa": np.array(learn, dtype=float),
                                            "indiceMt": np.array(test, dtype=float)})
    else:
        (root / "fold3026-matrices_Learn.txt").write_text("\n".join("   ".join(fmt(v) for v in r) for r in learn))
        (root / "fold3026-matrices_Test.txt").write_text("\n".join("   ".join(fmt(v) for v in r) for r in test))
    return {"names": names, "learn": learn, "test": test}


def make_tut2017(root: Path) -> dict:
    scenes = ["beach", "bus", "cafe/restaurant"]
    files = [f"audio/{s.replace('/', '_')}_{i}.wav" for s in scenes for i in range(4)]
    for i, f in enumerate(files):
        write_clip(root / f, i)
    label = {f: f.split("/")[1].rsplit("_", 1)[0].replace("cafe_restaurant", "cafe/restaurant") for f in files}
    (root / "meta.txt").write_text("".join(f"{f}\t{label[f]}\tloc{i % 2}\n" for i, f in enumerate(files)))
    setup = root / "evaluation_setup"
    setup.mkdir()
    folds = {}
    for k in (1, 2):
        test = [f for i, f in enumerate(files) if i % 2 == k - 1]
        train = [f for f in files if f not in test]
        (setup / f"fold{k}_train.txt").write_text("".join(f"{f}\t{label[f]}\n" for f in train))
        (setup / f"fold{k}_evaluate.txt").write_text("".join(f"{f}\t{label[f]}\n" for f in test))
        (setup / f"fold{k}_test.txt").write_text("".join(f"{f}\n" for f in test))
        folds[k] = (train, test)
    return {"files": files, "label": label, "folds": folds}


def make_tau2020(root: Path) -> dict:
    scenes = ["airport", "metro", "park"]
    files = [f"audio/{s}-lisbon-{i}-a.wav" for s in scenes for i in range(3)]
    for i, f in enumerate(files):
        write_clip(root / f, i + 3)
    label = {f: f.split("/")[1].split("-")[0] for f in files}
    (root / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\n"
                                   + "".join(f"{f}\t{label[f]}\tlisbon-{i}\ta\n" for i, f in enumerate(files)))
    setup = root / "evaluation_setup"
    setup.mkdir()
    test = files[2::3]
    train = [f for f in files if f not in test]
    (setup / "fold1_train.csv").write_text("filename\tscene_label\n" + "".join(f"{f}\t{label[f]}\n" for f in train))
    (setup / "fold1_evaluate.csv").write_text("filename\tscene_label\n" + "".join(f"{f}\t{label[f]}\n" for f in test))
    (setup / "fold1_test.csv").write_text("filename\n" + "".join(f"{f}\n" for f in test))
    return {"files": files, "label": label, "train": train, "test": test}


def make_esc50(root: Path) -> dict:
    cats = ["dog", "rain", "siren"]
    rows = []
    for i in range(9):
        fold, target = i % 3 + 1, i // 3
        name = f"{fold}-{100 + i}-A-{target}.wav"
        write_clip(root / "audio" / name, i)
        rows.append((name, fold, target, cats[target]))
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n" + "".join(
        f"{n},{f},{t},{c},False,{100 + i},A\n" for i, (n, f, t, c) in enumerate(rows)))
    return {"rows": rows, "cats": cats}


def make_folder(root: Path, per_class: int = 6, seconds=(1.0,)) -> dict:
    classes = ["forest", "street", "café"]
    for c, name in enumerate(classes):
        for i in range(per_class):
            ext = ".flac" if i % 3 == 1 else ".wav"
            v = 3 if ext == ".flac" else None
            write_clip(root / name / f"rec_{i}{ext}", 10 * c + i, seconds[i % len(seconds)], variant=v)
    return {"classes": classes}


def make_bad_files(root: Path) -> dict:
    """One of each kind of broken file in a folder data set, beside good ones."""
    make_folder(root, per_class=4)
    d = root / "street"
    sf.write(d / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    good = (d / "rec_0.wav").read_bytes()
    (d / "truncated.wav").write_bytes(good[: len(good) // 3])
    (d / "notaudio.wav").write_text("this is not audio\n" * 20)
    sf.write(d / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    x[100] = np.nan
    sf.write(d / "nan.wav", x, 16000, subtype="FLOAT")
    weird = os.fsencode(d) + b"/caf\xe9-latin1.wav"  # not valid UTF-8: still read, shown escaped
    write_clip(Path(os.fsdecode(weird)), 5, variant=0)
    return {"bad": {"empty.wav": "empty", "truncated.wav": "truncated", "notaudio.wav": "not readable as audio",
                    "silent.wav": "silent", "nan.wav": "NaN"}}
