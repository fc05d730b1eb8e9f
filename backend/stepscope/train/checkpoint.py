"""A training checkpoint as a directory of parts small enough to leave a lent GPU machine and come back.

A device call returns at most 8 files of 16 MiB, and a call's working tree (the repository plus what
it carries) is at most 64 MiB: so a checkpoint is one `torch.save` of the stage's whole state (weights,
optimiser, step, schedule, random-generator state, loss record, config) cut into parts of at most
`PART_BYTES`, with an index that names the parts and the SHA-256 of their concatenation. It is
written into a fresh sibling directory and then renamed over the old one, so a process killed while
saving leaves the previous checkpoint whole; loading refuses a directory whose parts do not add up.

Layout of `<dir>`:
  checkpoint.json        {"format", "stage", "step", "total", "bytes", "sha256", "parts": [...]}
  state.pt.000, .001 …   the parts, in order
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import torch

FORMAT = 1
INDEX = "checkpoint.json"
PART_BYTES = 15 * 1024 * 1024  # under the device's 16 MiB a returned file
PART_PREFIX = "state.pt."


class CheckpointError(ValueError):
    """A checkpoint directory that is missing, incomplete or altered; the message says which."""


def save_checkpoint(state: dict, directory: Path, *, part_bytes: int = PART_BYTES) -> dict:
    """Write `state` (tensors, dicts, lists, numbers, strings) as `directory`, replacing it atomically.

    `state` must hold "stage", "step" and "total" (the index repeats them so a person can read where a
    run stands without loading it). Returns the index.
    """
    directory = Path(directory)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    blob = buffer.getvalue()
    staging = directory.with_name(directory.name + ".writing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    parts = []
    for number, start in enumerate(range(0, max(1, len(blob)), part_bytes)):
        name = f"{PART_PREFIX}{number:03d}"
        (staging / name).write_bytes(blob[start : start + part_bytes])
        parts.append(name)
    index = {
        "format": FORMAT,
        "stage": state["stage"],
        "step": int(state["step"]),
        "total": int(state["total"]),
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "parts": parts,
    }
    (staging / INDEX).write_text(json.dumps(index, indent=1))
    _fsync_tree(staging)
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return index


def load_checkpoint(directory: Path, map_location: str | torch.device = "cpu") -> dict:
    """The state `save_checkpoint` wrote, after checking that its parts are all there and unaltered."""
    directory = Path(directory)
    index_path = directory / INDEX
    if not index_path.is_file():
        raise CheckpointError(f"{directory}: no {INDEX} (not a checkpoint directory)")
    index = json.loads(index_path.read_text())
    if index.get("format") != FORMAT:
        raise CheckpointError(f"{directory}: checkpoint format {index.get('format')!r}, this code reads {FORMAT}")
    missing = [name for name in index["parts"] if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory}: missing parts {missing}")
    blob = b"".join((directory / name).read_bytes() for name in index["parts"])
    if len(blob) != index["bytes"] or hashlib.sha256(blob).hexdigest() != index["sha256"]:
        raise CheckpointError(f"{directory}: the parts do not add up to the saved checkpoint (size or SHA-256)")
    return torch.load(io.BytesIO(blob), map_location=map_location, weights_only=True)


def read_index(directory: Path) -> dict:
    """The index alone (stage, step, total, size): cheap, no tensors loaded."""
    return json.loads((Path(directory) / INDEX).read_text())


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
