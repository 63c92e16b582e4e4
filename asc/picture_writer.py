"""Attention pictures drawn in background processes while the caller goes on classifying
(``asc predict --attention`` and a fold's test-end pictures): :class:`PictureWriter`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# numpy and matplotlib are imported where they are used: a picture process imports this
# module before its initializer (_start_worker) has limited its threads
WORKER_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def draw_attention_picture(path, analysis: dict, hop_seconds: float, title: str = "",
                           events: list[dict] | None = None, class_names: list[str] | None = None,
                           band_hz: np.ndarray | None = None) -> str:
    """Draw :func:`attention_figure` and save it as the PNG ``path`` (a picture worker's task)."""
    from asc.viz import attention_figure, save

    save(attention_figure(analysis, hop_seconds, title, events, class_names, band_hz), path)
    return str(path)


_IMPORT_SECONDS = 0.0  # in a picture process: how long its start-up import of the drawing code took


def warm_up() -> float:
    """Import the drawing code (numpy, matplotlib) now; the seconds it took.  Each picture
    process runs it as it starts, so the import overlaps the caller's classifying instead
    of delaying the process's first picture."""
    import time

    t0 = time.perf_counter()
    import asc.viz  # noqa: F401

    return time.perf_counter() - t0


def import_seconds(_: object = None) -> float:
    """In a picture process: the seconds its start-up import took (for the benchmark)."""
    return _IMPORT_SECONDS


def picture_workers(n_pictures: int) -> int:
    """Background processes worth starting for ``n_pictures`` pictures: none for a few (a
    spawned process takes about a second to import matplotlib), else one per CPU core (a
    picture costs more than classifying its clip, so the main process mostly waits), at
    most 8 and one per two pictures.  On 2 cores, 16 pictures: 1.47x the files per second
    of drawing them in the main process (2 workers; 1 worker: 1.03x)."""
    return 0 if n_pictures < 4 else min(8, _cores(), n_pictures // 2)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _start_worker() -> None:
    """A picture process draws one picture at a time, with one thread: the thread settings
    are made before its numpy is imported, so it starts no BLAS or OpenMP thread pool (the
    parent's settings, up to one thread per core in each of up to 8 processes, would
    compete for the cores the pictures need).  It also leaves Ctrl-C and SIGTERM (sent to
    the whole process group by a terminal, SLURM or ``cv.parallel_folds``) to its parent,
    which shuts it down, and then imports the drawing code (:func:`warm_up`)."""
    import signal

    global _IMPORT_SECONDS
    os.environ.update(WORKER_THREADS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _IMPORT_SECONDS = warm_up()
    except Exception:  # noqa: BLE001  the first picture raises it again, with its own message
        pass


class PictureWriter:
    """Draws attention pictures into PNG files in background processes while the caller
    goes on classifying: matplotlib takes 0.4–1 s a picture, more than classifying a 30 s
    clip on a GPU.  With ``workers=0``, or where processes cannot be started, each picture
    is drawn at once, in this process.  At most two pictures per worker wait to be drawn
    (their analyses are held in memory); a worker's error is raised by the next ``draw`` or
    on leaving the ``with`` block, which waits for every picture, unless the block is left
    by an exception: then the pictures not yet drawn are dropped.  Inside the block the
    caller's torch threads are lowered to the cores the picture processes leave (at least
    one), and restored after it: with a torch thread per core as well, the caller's threads
    and the pictures' processes fought over the cores and both slowed down many times over
    (on an H200 machine a fold's 19 pictures took 13.6 s with 16 caller threads and 6.6 s
    with 4; on 2 cores beside another job, 6 files with pictures took 33.9 s, and 6.0 s with
    one caller thread).
    (Only this process's share is counted: sibling processes such as ``cv.parallel_folds``'
    folds already run with their own share of threads.)

    Parameters
    ----------
    workers : int
        Processes (spawned, so that they start without the caller's threads and CUDA
        state; they import only numpy and matplotlib), e.g. :func:`picture_workers`.
    """

    def __init__(self, workers: int):
        self.pool, self.pending, self.workers, self.caller_threads = None, [], workers, None
        if workers > 0:
            self.pool = _start_pool(workers)

    def draw(self, path, analysis: dict, hop_seconds: float, title: str = "", events: list[dict] | None = None,
             class_names: list[str] | None = None, band_hz: np.ndarray | None = None) -> None:
        """Draw one picture (see :func:`attention_figure`) into ``path``."""
        args = (path, analysis, hop_seconds, title, events, class_names, band_hz)
        if self.pool is None:
            draw_attention_picture(*args)
            return
        self.pending.append(self.pool.submit(draw_attention_picture, *args))
        while self.pending and (self.pending[0].done() or len(self.pending) > 2 * self.workers):
            self.pending.pop(0).result()

    def __enter__(self) -> PictureWriter:
        if self.pool is not None:  # the caller's torch threads leave the picture processes their cores
            import torch

            self.caller_threads = torch.get_num_threads()
            torch.set_num_threads(max(1, min(self.caller_threads, _cores() - self.workers)))
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self.pool is None:
            return
        import torch

        torch.set_num_threads(self.caller_threads)
        if exc_type is not None:  # the caller's error goes on; the pictures are not waited for
            self.pool.shutdown(wait=False, cancel_futures=True)
            return
        try:
            for future in self.pending:
                future.result()
        finally:
            self.pool.shutdown(cancel_futures=True)


def _start_pool(workers: int):
    """A pool of ``workers`` spawned processes, all started now (each imports the drawing
    code as it starts); None where processes cannot be started (the pictures are then drawn
    in the calling process)."""
    import multiprocessing
    import sys
    import types
    import warnings
    from concurrent.futures import ProcessPoolExecutor

    # A spawned process first re-runs the caller's main script, which in a script without
    # an `if __name__ == "__main__":` guard would start it all over again.  The workers
    # need nothing from it: they are started, all of them, while __main__ is an empty module.
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    pool = None
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker)
        for _ in range(workers):  # each submit that finds no idle worker starts one
            pool.submit(int)
        return pool
    except OSError as e:  # no /dev/shm, a process limit, a sandbox
        warnings.warn(f"attention pictures are drawn in this process: background processes failed to start ({e})",
                      stacklevel=3)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        return None
    finally:
        sys.modules["__main__"] = main
