"""Read what W&B wrote for an offline run (the ``run-<id>.wandb`` record log), so that
tests check the files W&B produced rather than our own bookkeeping.

The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB
blocks of records, each with a 7-byte header (crc32, length, type: full/first/middle/last)
holding serialized ``wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B record log"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            pending += chunk
        rec = pb.Record()
        rec.ParseFromString(pending)
        yield rec


def read_run(run_dir: Path) -> dict:
    """{"run": {id, group, job_type, name, tags}, "config": {...}, "summary": {...},
    "history_keys": set} of one offline run folder."""
    (log,) = Path(run_dir).glob("run-*.wandb")
    out = {"run": {}, "config": {}, "summary": {}, "history_keys": set()}
    for rec in records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out["run"] = {"id": r.run_id, "group": r.run_group, "job_type": r.job_type, "name": r.display_name,
                          "tags": list(r.tags)}
            for item in r.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            out["history_keys"] |= {item.key or "/".join(item.nested_key) for item in rec.history.item}
    return out
