"""Checkpoints that a crash cannot corrupt and that damage cannot slip through.

A file written by :func:`atomic_save` holds the ``torch.save`` serialisation of
the object (the *payload*) together with its SHA-256 digest; :func:`load_checkpoint`
recomputes the digest before it unpickles anything, so a flipped byte is an
error naming the file rather than a model trained on from garbage. The RNG
helpers here make resuming exact.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path
from typing import Any

import torch

from ._atomic import atomic_open

__all__ = ["CheckpointError", "atomic_save", "load_checkpoint", "rng_state", "set_rng_state"]

#: Marks a file written by :func:`atomic_save`.
FORMAT = "dynamicblocks.checkpoint"
_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable, damaged, or not what it should be; names the file."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """Save ``obj`` to ``path`` with a checksum, through a temporary file and a rename.

    The payload (``torch.save(obj)``) and its SHA-256 digest are written to a
    temporary file in the same directory, flushed to disk, then moved over
    ``path`` with :func:`os.replace`. A process killed at any point leaves
    either the old file or the new one, never a partial one; on an exception
    the temporary file is removed. Read the file back with
    :func:`load_checkpoint`.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    record = {
        "format": FORMAT,
        "version": _VERSION,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),  # stored raw
    }
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        torch.save(record, handle)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a file written by :func:`atomic_save`, after checking its checksum.

    A plain ``torch.save`` file (a ``state_dict`` saved by other code) loads
    as it is, since it carries no checksum. Either way nothing but tensors
    and plain containers is unpickled (``weights_only=True``): no code runs.

    Raises:
        FileNotFoundError: naming the path if it does not exist.
        CheckpointError: naming the path if the file is not readable by
            :func:`torch.load` or its payload does not match its checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    record = _torch_load(path, path, "cpu")
    if not (isinstance(record, dict) and record.get("format") == FORMAT):
        return record if map_location == "cpu" else _torch_load(path, path, map_location)
    payload, digest = record.get("payload"), record.get("sha256")
    if not (torch.is_tensor(payload) and payload.dtype == torch.uint8 and isinstance(digest, str)):
        raise CheckpointError(f"checkpoint {path} is damaged: its payload or checksum is missing")
    payload = payload.cpu().numpy().tobytes()
    actual = hashlib.sha256(payload).hexdigest()
    if actual != digest:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its payload's SHA-256 is {actual}, "
            f"but the file records {digest}"
        )
    return _torch_load(io.BytesIO(payload), path, map_location)


def _torch_load(source: Path | io.BytesIO, path: Path, map_location: Any) -> Any:
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error


def rng_state() -> dict[str, Any]:
    """The states of Python's, torch's CPU and (if present) every CUDA generator."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only if CUDA is present)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
