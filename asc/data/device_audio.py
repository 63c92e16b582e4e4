"""A fold's decoded audio held on the training device, cut there by index.

With ``data.on_device`` the DataModule copies the waveforms of the fold's clips into one
flat float16 tensor on the training device (2 bytes per sample; the audio cache is float16
already, so nothing is lost for file data sets) and its loaders yield only rows
``(clip, start, size)`` (:mod:`asc.data.batches`); :meth:`DeviceAudio.gather` cuts the
batch there.  No worker processes, no host-to-device copies of audio on the hot path.
Under DDP (or with parallel folds) every process holds its own copy.
"""

from __future__ import annotations

import numpy as np
import torch

from asc.data.base import AudioStore

RELEASE_BYTES = 256 * 2**20  # cache bytes read between two unmaps while the audio goes to the device


def audio_bytes(store: AudioStore, indices: np.ndarray) -> int:
    """Bytes the clips ``indices`` take on the device (float16)."""
    return 2 * int(sum(store.length(int(i)) for i in indices))


def use_device_audio(mode: str, device: torch.device, n_bytes: int, max_fraction: float) -> tuple[bool, str | None]:
    """Whether to hold the audio on ``device`` under ``data.on_device=mode``, and a line
    to print about the choice (None: nothing worth saying)."""
    if mode == "on":
        return True, None
    if mode == "off" or device.type != "cuda":
        return False, None
    free, _ = torch.cuda.mem_get_info(device)
    if n_bytes <= max_fraction * free:
        return True, f"data.on_device=auto: the fold's audio ({n_bytes / 1e9:.2f} GB) is held on {device}"
    return False, (f"data.on_device=auto: the fold's audio ({n_bytes / 1e9:.2f} GB) does not fit in "
                   f"data.on_device_max_fraction={max_fraction} of {device}'s free memory ({free / 1e9:.2f} GB); "
                   "reading it with the DataLoader instead")


class DeviceAudio:
    """Clips ``indices`` of ``store`` as one float16 tensor on ``device``.

    Parameters
    ----------
    store : AudioStore
        The clip set's audio (float32 at the configured rate).
    indices : array of int
        The clips to hold (the fold's training, validation and test clips).
    device : torch.device
    """

    def __init__(self, store: AudioStore, indices: np.ndarray, device: torch.device):
        indices = np.unique(np.asarray(indices, dtype=np.int64))
        offsets = np.zeros(len(store), dtype=np.int64)
        total = 0
        for i in indices:
            offsets[i] = total
            total += store.length(int(i))
        # allocated on the device and filled clip by clip: the host never holds more than one
        # clip (a whole LITIS fold is 4 GB in float16; staged on the host it set the peak RSS);
        # a memory-mapped cache is unmapped every RELEASE_BYTES read, and at the end, so that
        # its pages (4.4 GB of RSS for LITIS on an H200) do not stay in this process's
        # resident memory once they are on the device
        self.audio = torch.zeros(max(1, total), dtype=torch.float16, device=device)
        release = getattr(store, "release", None)
        read = 0
        for i in indices:
            wave = torch.from_numpy(np.asarray(store.get(int(i)), dtype=np.float32)).to(torch.float16)
            self.audio[offsets[i]:offsets[i] + len(wave)].copy_(wave)
            read += 2 * len(wave)
            if release is not None and read >= RELEASE_BYTES:
                release()
                read = 0
        if release is not None:
            release()
        self.offsets = torch.from_numpy(offsets).to(device)
        self.device = torch.device(device)

    @property
    def nbytes(self) -> int:
        return self.audio.numel() * self.audio.element_size()

    def gather(self, rows: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms (R, width) float32 of the rows ``(clip, start, size)`` (R, 3), zero
        beyond each row's size, and the sizes (R,)."""
        rows = rows.to(self.audio.device)
        clip, start, size = rows.unbind(1)
        pos = torch.arange(width, device=self.audio.device)
        inside = pos[None, :] < size[:, None]
        index = torch.where(inside, (self.offsets[clip] + start)[:, None] + pos[None, :], 0)
        return self.audio[index].float() * inside, size

    def cut(self, batch: dict) -> dict:
        """``batch`` (on this device) with ``wave`` and ``length`` cut from its ``rows`` and
        ``width`` (a loader's batch that only names its crops, :mod:`asc.data.batches`)."""
        batch["wave"], batch["length"] = self.gather(batch.pop("rows"), batch.pop("width"))
        return batch
