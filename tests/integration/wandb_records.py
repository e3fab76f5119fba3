"""Read an offline W&B run (``run-*.wandb``) back without syncing it.

The file is a LevelDB-style log (wandb's own format): a 7-byte header (``:W&B``, magic, version), then 32 KiB
blocks of chunks, each ``crc32 (4) | length (2) | type (1) | data``; types 1 = full, 2 = first, 3 = middle,
4 = last; a block's tail shorter than a chunk header is padding. Each record is a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7


def _payloads(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, parts = HEADER, []
    while position + HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < HEADER:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        parts.append(data[position + HEADER : position + HEADER + length])
        position += HEADER + length
        if kind in (1, 4):
            yield b"".join(parts)
            parts = []


def read_run(path: Path) -> dict:
    """``{"summary": {key: json}, "history_keys": set, "tags": [...], "group": str, "config_keys": [...]}``."""
    out: dict = {"summary": {}, "history_keys": set(), "tags": [], "group": "", "config_keys": []}
    for payload in _payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): i.value_json for i in record.summary.update})
        elif kind == "history":
            out["history_keys"].update(i.key or "/".join(i.nested_key) for i in record.history.item)
        elif kind == "run":
            out["tags"], out["group"] = list(record.run.tags), record.run.run_group
            out["config_keys"] = [item.key for item in record.run.config.update]
    return out
