"""CIFAR-10/100 without torchvision: loading, validation, device-resident batching.

:func:`load_cifar` reads the official "python version" archives (the pickled
batches in ``cifar-10-batches-py/`` or ``cifar-100-python/``, or the
``.tar.gz`` they ship in) with :mod:`pickle` and NumPy, downloading the
archive when asked. Every batch is validated and a bad file is named in the
error. An already extracted directory is never checksummed, so re-encoded
copies and subsets with fewer images per batch load too.

:class:`CifarDataset` keeps all images as one ``uint8`` tensor on a device and
serves shuffled, optionally augmented and sharded mini-batches built with
whole-batch tensor operations: no per-image Python loop, no DataLoader
workers. :class:`TensorDataset` does the same for any tensors of your own,
with the same order and sharding. :func:`split` makes a seeded
train/validation split of either.

The batches are pickles, and unpickling runs code named by the file: the
reader here resolves only the handful of NumPy globals an array needs, each
through a checked stand-in, and refuses the instructions that let a small
file build a huge object graph, so a tampered or malicious batch file fails
with a ValueError naming it, in memory and time bounded by its size, instead
of running anything else or exhausting memory.

Modules: :mod:`~dynamicblocks.data.cifar` (the files on disk: finding,
downloading, extracting, loading), :mod:`~dynamicblocks.data.batchfile` (the
bounded reader of one batch file) and :mod:`~dynamicblocks.data.datasets`
(device-resident datasets and their batch transforms). Everything public is
importable from ``dynamicblocks.data``.
"""

from __future__ import annotations

from .cifar import (
    ARCHIVE_MD5,
    ARCHIVE_URLS,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DATASETS,
    CifarArrays,
    CifarNotFoundError,
    load_cifar,
)
from .datasets import CifarDataset, TensorDataset, crop_flip, normalize, split

__all__ = [
    "ARCHIVE_MD5",
    "ARCHIVE_URLS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATASETS",
    "CifarArrays",
    "CifarDataset",
    "CifarNotFoundError",
    "TensorDataset",
    "crop_flip",
    "load_cifar",
    "normalize",
    "split",
]
