"""Atomic file writes: a reader, or a kill at any moment, sees the old file or the new one.

:func:`atomic_path` is the one temp-file-then-rename step; text, JSON, the decoded audio
cache and Lightning checkpoints (:class:`asc.callbacks.AtomicCheckpointIO`) are all written
through it.  No Lightning here: commands that never train import this module too, and
importing Lightning costs seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; when the block ends without an error,
    rename it to ``path`` (else remove it).  The rename is atomic on one file system."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: a reader (or a kill at
    any moment) sees either the old file or the new one, never half of one."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2))

