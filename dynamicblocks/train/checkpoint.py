"""Checkpoints that a crash cannot corrupt, and the RNG states that make resuming exact."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

from ._atomic import atomic_open

__all__ = ["atomic_save", "load_checkpoint", "rng_state", "set_rng_state"]


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file and an atomic rename.

    The object is written to a temporary file in the same directory, flushed
    to disk, then moved over ``path`` with :func:`os.replace`. A process
    killed at any point leaves either the old file or the new one, never a
    partial one; on an exception the temporary file is removed.
    """
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by the trainer (``weights_only=True``: no code runs).

    Raises:
        FileNotFoundError: naming the path if it does not exist.
        RuntimeError: naming the path if the file is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise RuntimeError(f"cannot read checkpoint {path}: {error}") from error


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
