"""Memory probes shared by the benchmarks: bytes saved for backward, peak resident memory."""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

import torch
from torch import nn

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


LIBC = _glibc()


def pin_mmap_threshold(nbytes: int = 1 << 16) -> bool:
    """Serve allocations above ``nbytes`` by mmap, so freeing returns them (glibc only)."""
    m_mmap_threshold = -3
    return LIBC is not None and bool(LIBC.mallopt(m_mmap_threshold, nbytes))


def _status_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {STATUS}")


def peak_rss_growth_mb(run) -> float | None:
    """Peak resident memory during ``run()`` above the resident memory before it."""
    if not (STATUS.exists() and CLEAR_REFS.exists()):
        return None
    gc.collect()
    if LIBC is not None:
        LIBC.malloc_trim(0)  # give freed heap memory back, so that reuse shows as growth
    CLEAR_REFS.write_text("5")  # reset VmHWM to the current resident set
    before = _status_kib("VmRSS")
    run()
    return (_status_kib("VmHWM") - before) / 1024


def saved_activation_mb(model: nn.Module, run) -> float:
    """Megabytes of distinct non-parameter storages saved for backward during ``run()``."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values()) / 2**20
