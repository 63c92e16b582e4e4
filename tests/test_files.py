"""Loaders of data sets on disk, in their exact official layouts, and bad input."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asc.config import load_config
from asc.data import load_clipset
from asc.data.audio import BadAudio, read_audio
from asc.data.layouts.litis import LITIS_CLASSES, litis_class
from asc.errors import AscError
from helpers.audio_trees import (
    make_bad_files,
    make_esc50,
    make_folder,
    make_litis,
    make_tau2020,
    make_tut2017,
    write_clip,
)


def cfg_for(name, root, *extra):
    return load_config(overrides=[f"data.name={name}", f"data.root={root}", f"data.cache_dir={root}/.cache",
                                  "data.sample_rate=16000", *extra]).data


def names_of(clips, idx):
    return sorted(Path(clips.items[i]).name for i in idx)


def assert_disjoint(clips):
    for tr, te in clips.folds.values():
        assert not set(tr.tolist()) & set(te.tolist())


def test_litis_class_is_longest_prefix():
    assert litis_class("busystreet12.wav") == "busystreet" and litis_class("bus3.wav") == "bus"
    assert litis_class("hallgare1.wav") == "hallgare" and litis_class("hall1.wav") == "hall"
    assert litis_class("metro-rouen99.wav") == "metro-rouen" and litis_class("zoo1.wav") is None
    assert len(LITIS_CLASSES) == 19


@pytest.mark.parametrize("mat", [False, True])
def test_litis(tmp_path, mat):
    spec = make_litis(tmp_path, mat=mat)
    clips = load_clipset(cfg_for("litis", tmp_path))
    assert clips.class_names == list(LITIS_CLASSES) and len(clips) == 10
    for item, label in zip(clips.items, clips.labels):
        assert clips.class_names[label] == litis_class(item)
    assert clips.class_names[clips.labels[clips.items.index("data/sound/busystreet1.wav")]] == "busystreet"
    assert clips.class_names[clips.labels[clips.items.index("data/sound/hallgare2.wav")]] == "hallgare"
    assert sorted(clips.folds) == [1, 2]
    for k in (1, 2):
        tr, te = clips.folds[k]
        assert names_of(clips, tr) == sorted(spec["names"][i - 1] for i in spec["learn"][k - 1])
        assert names_of(clips, te) == sorted(spec["names"][i - 1] for i in spec["test"][k - 1])
    assert_disjoint(clips)
    wave = clips.audio.get(0)
    assert wave.dtype == np.float32 and abs(len(wave) - 16000) <= 1  # 1 s resampled to 16 kHz


def test_tut2017(tmp_path):
    spec = make_tut2017(tmp_path)
    clips = load_clipset(cfg_for("dcase", tmp_path))
    assert clips.class_names == ["beach", "bus", "cafe/restaurant"] and clips.info["notes"] == ["TUT 2016-2018"]
    for k, (train, test) in spec["folds"].items():
        tr, te = clips.folds[k]
        assert sorted(clips.items[i] for i in tr) == sorted(train)
        assert sorted(clips.items[i] for i in te) == sorted(test)
    for item, label in zip(clips.items, clips.labels):
        assert clips.class_names[label] == spec["label"][item]
    assert_disjoint(clips)


def test_tau2020(tmp_path):
    spec = make_tau2020(tmp_path)
    clips = load_clipset(cfg_for("dcase", tmp_path))
    assert clips.info["notes"] == ["TAU 2019/2020"] and list(clips.folds) == [1]
    tr, te = clips.folds[1]
    assert sorted(clips.items[i] for i in tr) == sorted(spec["train"])
    assert sorted(clips.items[i] for i in te) == sorted(spec["test"])
    for item, label in zip(clips.items, clips.labels):
        assert clips.class_names[label] == spec["label"][item]


def test_esc50(tmp_path):
    spec = make_esc50(tmp_path)
    clips = load_clipset(cfg_for("esc50", tmp_path))
    assert clips.class_names == spec["cats"] and sorted(clips.folds) == [1, 2, 3]
    for name, fold, target, _cat in spec["rows"]:
        i = clips.items.index(f"audio/{name}")
        assert clips.labels[i] == target
        assert i in clips.folds[fold][1] and all(i in clips.folds[k][0] for k in (1, 2, 3) if k != fold)
    assert_disjoint(clips)


def test_folder_stratified_folds(tmp_path):
    spec = make_folder(tmp_path, per_class=6)
    clips = load_clipset(cfg_for("folder", tmp_path, "data.folder_folds=3"))
    assert clips.class_names == sorted(spec["classes"]) and len(clips) == 18
    seen = []
    for tr, te in clips.folds.values():
        assert np.bincount(clips.labels[te], minlength=3).tolist() == [2, 2, 2]
        assert len(tr) + len(te) == 18
        seen += te.tolist()
    assert sorted(seen) == list(range(18))
    again = load_clipset(cfg_for("folder", tmp_path, "data.folder_folds=3"))
    assert all(np.array_equal(again.folds[k][1], clips.folds[k][1]) for k in clips.folds)  # seeded


def test_mono_mixdown_and_resampling(tmp_path):
    sr = 44100
    t = np.arange(sr) / sr
    left, right = np.sin(2 * np.pi * 440 * t), np.zeros_like(t)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1).astype(np.float32) * 0.5, sr, subtype="PCM_24")
    wave, info = read_audio(tmp_path / "st.wav", 16000)
    assert info.channels == 2 and info.sample_rate == sr and len(wave) == 16000
    assert np.max(np.abs(wave)) == pytest.approx(0.25, abs=0.01)  # mean of the channels
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) == 440  # 1 Hz bins: the tone survives resampling


def test_cache_means_no_decoding_after_the_first_epoch(tmp_path, monkeypatch):
    make_folder(tmp_path, per_class=2)
    cfg = cfg_for("folder", tmp_path, "data.folder_folds=2")
    first = load_clipset(cfg)
    import asc.data.audio as audio

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(audio, "read_audio", boom)
    second = load_clipset(cfg)
    np.testing.assert_array_equal(first.audio.get(3), second.audio.get(3))
    assert len(list((tmp_path / ".cache").glob("*.f16"))) == 1
    os.utime(tmp_path / "forest" / "rec_0.wav", ns=(1, 1))  # a changed file means a new cache
    with pytest.raises(AssertionError, match="decoded again"):
        load_clipset(cfg)


def test_cached_audio_matches_the_file(tmp_path):
    write_clip(tmp_path / "a" / "x.wav", 0, variant=2)  # 16 kHz float
    write_clip(tmp_path / "b" / "y.wav", 1, variant=2)
    clips = load_clipset(cfg_for("folder", tmp_path, "data.folder_folds=1"))
    ref, _ = read_audio(tmp_path / "a" / "x.wav", 16000)
    np.testing.assert_allclose(clips.audio.get(clips.items.index("a/x.wav")), ref, atol=1e-3)


# ------------------------------------------------------------------------- bad input
def test_missing_root_and_split_files(tmp_path):
    with pytest.raises(AscError, match="is not a folder"):
        load_clipset(cfg_for("litis", tmp_path / "nope"))
    make_litis(tmp_path)
    (tmp_path / "fold3026-matrices_Test.txt").unlink()
    (tmp_path / "fold3026-matrices_Learn.txt").unlink()
    with pytest.raises(AscError, match="no LITIS split files"):
        load_clipset(cfg_for("litis", tmp_path))
    with pytest.raises(AscError, match="neither meta.txt"):
        load_clipset(cfg_for("dcase", tmp_path))
    with pytest.raises(AscError, match="esc50.csv not found"):
        load_clipset(cfg_for("esc50", tmp_path))


def test_split_id_naming_no_file(tmp_path):
    make_litis(tmp_path)
    (tmp_path / "fold3026-matrices_Test.txt").write_text("6 8 99\n5 7 9\n")
    with pytest.raises(AscError, match="split 1 names id 99"):
        load_clipset(cfg_for("litis", tmp_path))


def test_wrong_split_file(tmp_path):
    make_litis(tmp_path)
    (tmp_path / "fold3026-matrices_Learn.txt").write_text("filename label\n")
    with pytest.raises(AscError, match="is not a number; is this the right split file"):
        load_clipset(cfg_for("litis", tmp_path))


def test_listed_audio_missing(tmp_path):
    make_tut2017(tmp_path)
    (tmp_path / "audio" / "beach_0.wav").unlink()
    with pytest.raises(AscError, match="'audio/beach_0.wav' .* not found"):
        load_clipset(cfg_for("dcase", tmp_path))


def test_label_not_in_class_list(tmp_path):
    make_tut2017(tmp_path)
    p = tmp_path / "evaluation_setup" / "fold1_evaluate.txt"
    p.write_text(p.read_text().replace("\tbeach\n", "\tbeech\n", 1))
    with pytest.raises(AscError, match="label 'beech' .* is not a class"):
        load_clipset(cfg_for("dcase", tmp_path))
    (tmp_path / "relation_wav_examples.txt").write_text("zoo1.wav 1\n")
    (tmp_path / "fold3026-matrices_Learn.txt").write_text("1\n")
    (tmp_path / "fold3026-matrices_Test.txt").write_text("1\n")
    with pytest.raises(AscError, match="'zoo1.wav' .* does not start with a LITIS class"):
        load_clipset(cfg_for("litis", tmp_path))


def test_bad_files_error_names_each_file_and_the_fix(tmp_path):
    spec = make_bad_files(tmp_path)
    with pytest.raises(AscError) as e:
        load_clipset(cfg_for("folder", tmp_path, "data.folder_folds=2"))
    msg = str(e.value)
    assert msg.startswith("5 unusable audio file(s)") and "data.on_bad_file=skip" in msg
    for name, why in spec["bad"].items():
        line = next(l for l in msg.splitlines() if name in l)
        assert why in line, line


def test_bad_files_skipped_when_asked(tmp_path, capsys):
    make_bad_files(tmp_path)
    clips = load_clipset(cfg_for("folder", tmp_path, "data.folder_folds=2", "data.on_bad_file=skip"))
    assert len(clips.info["skipped"]) == 5 and len(clips) == 13
    assert "skipped 5 unusable audio file(s)" in capsys.readouterr().out
    assert any("caf\\xe9-latin1.wav" in item.encode("utf-8", "surrogateescape").decode("latin-1") or "latin1" in item
               for item in clips.items)
    for i in range(len(clips)):
        w = clips.audio.get(i)
        assert np.isfinite(w).all() and np.any(w)
    assert sorted(np.concatenate([te for _, te in clips.folds.values()]).tolist()) == list(range(13))


def test_read_audio_reasons(tmp_path):
    make_bad_files(tmp_path)
    for name, why in {"empty.wav": "empty", "silent.wav": "silent", "nan.wav": "NaN"}.items():
        with pytest.raises(BadAudio, match=why):
            read_audio(tmp_path / "street" / name, 16000)


def test_partial_reads(tmp_path):
    make_folder(tmp_path, per_class=2)
    clips = load_clipset(cfg_for("folder", tmp_path, "data.folder_folds=2"))
    full = clips.audio.get(0)
    assert clips.audio.length(0) == len(full)
    np.testing.assert_array_equal(clips.audio.get(0, 100, 600), full[100:600])
    np.testing.assert_array_equal(clips.audio.get(0, len(full) - 10, len(full) + 50), full[-10:])
