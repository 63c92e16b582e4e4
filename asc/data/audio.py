"""Reading audio files, and the decoded-audio cache.

Files are read with soundfile (WAV/FLAC/OGG, 8/16/24/32-bit int and float), mixed to
mono and resampled with torchaudio.  (torchaudio >= 2.9 no longer decodes files itself.)

Decoding and resampling a data set once is slow; doing it every epoch is wasteful.  The
:class:`AudioCache` decodes every file once into one float16 file per (data set, rate,
file list + sizes + modification times), memory-maps it, and serves clips from it, so
later epochs read no audio files and resample nothing, and DataLoader workers share the
pages instead of each holding a copy (LITIS Rouen at 22.05 kHz is ~4 GB as 16-bit).
float16 keeps ~66 dB of resolution at any level, unlike int16 for quiet recordings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asc.io import atomic_path, write_text_atomic

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".w64"}
CACHE_VERSION = 2  # 2: truncated WAV files are caught (a cache of version 1 may hold them)


class BadAudio(Exception):
    """A file that cannot be used, with the reason."""


def display_name(path: str | os.PathLike) -> str:
    """A printable form of a path, even when its bytes are not valid UTF-8."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class FileInfo:
    sample_rate: int
    channels: int
    frames: int
    subtype: str
    format: str


def probe(path: str | os.PathLike) -> FileInfo:
    """Header information; raises BadAudio for files soundfile cannot open."""
    import soundfile as sf

    try:
        info = sf.info(os.fsencode(path))  # bytes: any file name, valid UTF-8 or not
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/TypeError
        raise BadAudio(f"not readable as audio ({_short(e)})") from None
    return FileInfo(int(info.samplerate), int(info.channels), int(info.frames), str(info.subtype), str(info.format))


def wav_truncation(path: str | os.PathLike) -> str | None:
    """For a RIFF/WAVE file: why its data chunk is shorter than its header says (None when
    it is whole, or not a plain WAV).  libsndfile derives the frame count from the file
    size, so a cut-off file reads as a shorter clip without a word; the header's data-chunk
    size is what the file promised."""
    import struct

    try:
        size = os.path.getsize(path)
        with open(os.fsencode(path), "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None  # no data chunk: libsndfile reports that itself
                cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(min(csize, 16))
                    block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else 0
                    f.seek(csize - len(fmt) + (csize & 1), os.SEEK_CUR)
                elif cid == b"data":
                    if csize in (0, 0xFFFFFFFF):  # written while streaming: size unknown
                        return None
                    held = size - f.tell()
                    if held >= csize:
                        return None
                    if block_align:
                        return (f"truncated: the header announces {csize // block_align} frames, the file holds "
                                f"{max(held, 0) // block_align}")
                    return f"truncated: the header announces {csize} bytes of audio, the file holds {max(held, 0)}"
                else:
                    f.seek(csize + (csize & 1), os.SEEK_CUR)
    except (OSError, struct.error):
        return None


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return re.sub(r"^Error (opening|reading) .*?: ", "", text)[:200]  # the path is named by the caller


def resample(wave: np.ndarray, orig: int, target: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc), float32 in and out."""
    if orig == target:
        return wave
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), orig, target).numpy()


def read_audio(path: str | os.PathLike, sample_rate: int) -> tuple[np.ndarray, FileInfo]:
    """Mono float32 waveform at ``sample_rate`` and the file's header information.

    Raises
    ------
    BadAudio
        Unreadable, empty, truncated, non-finite (NaN/Inf) or silent audio.
    """
    import soundfile as sf

    info = probe(path)
    if info.frames == 0:
        raise BadAudio("empty: the file holds no audio frames")
    problem = wav_truncation(path)
    if problem:
        raise BadAudio(problem)
    try:
        data, sr = sf.read(os.fsencode(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise BadAudio(f"truncated or corrupt audio data ({_short(e)})") from None
    if len(data) < info.frames:
        raise BadAudio(f"truncated: header announces {info.frames} frames, only {len(data)} could be read")
    if not np.isfinite(data).all():
        raise BadAudio(f"{int((~np.isfinite(data)).sum())} samples are NaN or Inf")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.any(wave):
        raise BadAudio("silent: every sample is zero")
    return resample(wave, int(sr), sample_rate).astype(np.float32, copy=False), info


class MemmapStore:
    """Clips as slices of one memory-mapped float16 array (see :class:`AudioCache`)."""

    def __init__(self, path: Path, offsets: np.ndarray, lengths: np.ndarray, sample_rate: int):
        self.path, self.offsets, self.lengths, self.sample_rate = path, offsets, lengths, sample_rate
        self._data = None  # opened lazily, so that each DataLoader worker maps it itself

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self):
        return {**self.__dict__, "_data": None}

    def length(self, index: int) -> int:
        return int(self.lengths[index])

    def get(self, index: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        if self._data is None:
            self._data = np.memmap(self.path, dtype=np.float16, mode="r")
        o, n = int(self.offsets[index]), int(self.lengths[index])
        start, stop, _ = slice(start, stop).indices(n)
        return self._data[o + start:o + max(start, stop)].astype(np.float32)

    def release(self) -> None:
        """Unmap the cache (the next ``get`` maps it again): its pages read so far stop
        counting in this process's resident memory (they stay in the page cache)."""
        self._data = None  # `get` returns copies: nothing else holds the mapping

    def subset(self, keep: np.ndarray) -> "MemmapStore":
        return MemmapStore(self.path, self.offsets[keep], self.lengths[keep], self.sample_rate)


class AudioCache:
    """Decode a list of files once into ``<cache_dir>/<key>.f16`` + ``<key>.json``.

    The key hashes the resolved paths, sizes and modification times of the files and the
    target rate, so any change to the data set (or the rate) makes a new cache.  The
    index records, per file, its offset and length in samples, its header information,
    or the reason it could not be used.
    """

    def __init__(self, paths: list[Path], sample_rate: int, cache_dir: Path, name: str = "audio",
                 workers: int | None = None):
        self.paths, self.sample_rate, self.cache_dir, self.name = paths, sample_rate, Path(cache_dir), name
        self.workers = workers or min(8, os.cpu_count() or 1)

    def key(self) -> str:
        h = hashlib.sha256(f"v{CACHE_VERSION}:{self.sample_rate}".encode())
        for p in self.paths:
            try:
                st = os.stat(p)
                h.update(f"{os.fsencode(p)!r}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{os.fsencode(p)!r}:missing\n".encode())
        return f"{self.name}-{self.sample_rate}hz-{h.hexdigest()[:16]}"

    def _decode(self, path: Path):
        try:
            wave, info = read_audio(path, self.sample_rate)
            return wave, info, None
        except BadAudio as e:
            return None, None, str(e)
        except OSError as e:
            return None, None, f"cannot open ({_short(e)})"

    def load(self, progress: bool = True) -> tuple[MemmapStore, list[dict]]:
        """The store of all files (problem files have length 0) and the per-file index."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        key = self.key()
        data_path, index_path = self.cache_dir / f"{key}.f16", self.cache_dir / f"{key}.json"
        if index_path.exists() and data_path.exists():
            index = json.loads(index_path.read_text())
        else:
            index = self._build(data_path, index_path, progress)
        offsets = np.array([e["offset"] for e in index], dtype=np.int64)
        lengths = np.array([e["length"] for e in index], dtype=np.int64)
        return MemmapStore(data_path, offsets, lengths, self.sample_rate), index

    def _build(self, data_path: Path, index_path: Path, progress: bool) -> list[dict]:
        from tqdm.auto import tqdm

        index, offset = [], 0
        chunk = 4 * self.workers
        bar = tqdm(total=len(self.paths), desc=f"decoding {self.name} at {self.sample_rate} Hz", unit="file",
                   disable=not progress or len(self.paths) < 20)
        with atomic_path(data_path) as tmp, open(tmp, "wb") as out, ThreadPoolExecutor(self.workers) as pool, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for start in range(0, len(self.paths), chunk):  # bounded memory: one chunk in flight
                batch = self.paths[start:start + chunk]
                for wave, info, problem in pool.map(self._decode, batch):
                    entry = {"offset": offset, "length": 0, "problem": problem}
                    if wave is not None:
                        out.write(wave.astype(np.float16).tobytes())
                        entry.update(length=len(wave), info=info.__dict__)
                        offset += len(wave)
                    index.append(entry)
                    bar.update(1)
        bar.close()
        write_text_atomic(index_path, json.dumps(index))
        return index
