"""Tiny CIFAR archives in the exact official "python version" format, for tests."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

PER_BATCH = 20
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz", "labels", 10),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", "fine_labels", 100),
}


def make_batches(name: str, seed: int = 0, per_batch: int = PER_BATCH) -> dict[str, dict]:
    """Batch dicts as in the official pickles: bytes keys, (N, 3072) uint8, label lists."""
    rng = np.random.default_rng(seed)
    _, _, label_key, num_classes = LAYOUT[name]
    files = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    if name == "cifar100":
        files = ["train", "test"]
    batches = {}
    for file in files:
        labels = rng.integers(0, num_classes, per_batch)
        labels[0] = num_classes - 1  # the top label must load
        batch = {
            b"batch_label": file.encode(),
            label_key.encode(): labels.tolist(),
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        if name == "cifar100":
            batch[b"coarse_labels"] = (labels // 5).tolist()
        batches[file] = batch
    return batches


class Python2Pickler(pickle._Pickler):
    """Writes a pickle as Python 2's cPickle did the official batches, at protocol 2.

    Every ``str`` and ``bytes`` becomes a Python 2 ``str`` (``SHORT_BINSTRING``
    or ``BINSTRING``, read back as bytes with ``encoding="bytes"``), a dtype is
    built as ``dtype('u1', 0, 1)`` and NumPy's modules are ``numpy.core.*``
    (see :func:`python2_pickle`).
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_python2_str
    dispatch[bytes] = save_python2_str

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, np.dtype):
            _, (spec, _, _), state = obj.__reduce__()
            return np.dtype, (spec, 0, 1), state
        return NotImplemented


def python2_pickle(batch: dict) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(batch)
    return buffer.getvalue().replace(b"numpy._core.", b"numpy.core.")  # GLOBAL lines: no lengths


def write_folder(root: Path, name: str, batches: dict[str, dict], protocol: int | str = 2) -> Path:
    """Write the batches into the dataset folder in ``root``, at ``protocol`` or ``"python2"``."""
    folder = root / LAYOUT[name][0]
    folder.mkdir(parents=True, exist_ok=True)
    for file, batch in batches.items():
        if protocol == "python2":
            payload = python2_pickle(batch)
        else:
            payload = pickle.dumps(batch, protocol=protocol)
        (folder / file).write_bytes(payload)
    return folder
