"""Tiny CIFAR archives in the exact official "python version" format, for tests."""

from __future__ import annotations

import pickle
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


def write_folder(root: Path, name: str, batches: dict[str, dict], protocol: int = 2) -> Path:
    folder = root / LAYOUT[name][0]
    folder.mkdir(parents=True, exist_ok=True)
    for file, batch in batches.items():
        (folder / file).write_bytes(pickle.dumps(batch, protocol=protocol))
    return folder
