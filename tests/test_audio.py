"""Reading files: cut-off and garbage WAV files are bad files, named with a reason."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from asc.data.audio import BadAudio, read_audio


def _wav(path, seconds=4.0, sr=16000, subtype="PCM_16"):
    x = np.random.default_rng(0).standard_normal(int(seconds * sr)).astype(np.float32) * 0.1
    sf.write(path, x, sr, subtype=subtype)
    return path


def test_truncated_and_garbage_wavs_are_bad(tmp_path):
    clip = _wav(tmp_path / "clip.wav")
    (tmp_path / "t.wav").write_bytes(clip.read_bytes()[:32044])  # head -c 32044: 16000 of 64000 frames
    with pytest.raises(BadAudio, match="truncated: the header announces 64000 frames, the file holds 16000"):
        read_audio(tmp_path / "t.wav", 16000)
    garbage = clip.read_bytes()[:44] + np.random.default_rng(1).bytes(110)  # 154 bytes
    (tmp_path / "g.wav").write_bytes(garbage)
    with pytest.raises(BadAudio, match="truncated: the header announces 64000 frames, the file holds 55"):
        read_audio(tmp_path / "g.wav", 16000)
    # whole files of other layouts still read: float, 24-bit, stereo, odd-sized chunks after the data
    for i, subtype in enumerate(["FLOAT", "PCM_24", "PCM_U8"]):
        wave, info = read_audio(_wav(tmp_path / f"ok{i}.wav", 1.0, subtype=subtype), 16000)
        assert len(wave) == 16000 and info.frames == 16000
    sf.write(tmp_path / "st.wav", np.full((8000, 2), 0.1, np.float32), 8000)
    assert len(read_audio(tmp_path / "st.wav", 16000)[0]) == 16000


def test_data_check_and_training_name_the_truncated_file(tmp_path):
    from asc.config import load_config
    from asc.data import load_clipset
    from asc.errors import AscError
    from helpers.audio_trees import make_folder

    make_folder(tmp_path / "d", per_class=3)
    good = next((tmp_path / "d").rglob("*.wav"))
    clip = _wav(tmp_path / "clip.wav")
    (good.parent / "cut.wav").write_bytes(clip.read_bytes()[:32044])
    (good.parent / "junk.wav").write_bytes(clip.read_bytes()[:44] + bytes(range(110)))
    proc = subprocess.run([sys.executable, "-m", "asc.cli", "data", "check", "data.name=folder",
                           f"data.root={tmp_path / 'd'}", f"data.cache_dir={tmp_path / 'cache'}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "problems (2):" in proc.stdout, proc.stdout + proc.stderr
    assert any("cut.wav: truncated: the header announces 64000 frames" in l for l in proc.stdout.splitlines())
    assert any("junk.wav: truncated" in l for l in proc.stdout.splitlines())
    cfg = load_config(overrides=["data.name=folder", f"data.root={tmp_path / 'd'}",
                                 f"data.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(AscError, match="2 unusable audio file") as e:
        load_clipset(cfg.data)
    assert "cut.wav" in str(e.value) and "junk.wav" in str(e.value)
