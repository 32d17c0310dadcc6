"""CIFAR-10/100 and STL-10 without torchvision: loading, validation, device-resident batching.

:func:`load_cifar` reads the official "python version" archives (the pickled
batches in ``cifar-10-batches-py/`` or ``cifar-100-python/``, or the
``.tar.gz`` they ship in) with :mod:`pickle` and NumPy, downloading the
archive when asked. Every batch is validated and a bad file is named in the
error. An already extracted directory is never checksummed, so re-encoded
copies and subsets with fewer images per batch load too.

:func:`load_stl10` reads STL-10 in its official binary format (the raw
``train_X.bin``, ``train_y.bin``, ``test_X.bin``, ``test_y.bin`` and,
when asked, ``unlabeled_X.bin`` of ``stl10_binary/``), checks every file's
size and labels, and returns arrays laid out as :func:`load_cifar`'s, of
96x96 images with labels 0..9. It does not download: extract the archive
yourself.

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
bounded reader of one batch file), :mod:`~dynamicblocks.data.stl10` (STL-10's
binary files) and :mod:`~dynamicblocks.data.datasets`
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
from .stl10 import STL10_URL, Stl10Arrays, Stl10NotFoundError, load_stl10

__all__ = [
    "ARCHIVE_MD5",
    "ARCHIVE_URLS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATASETS",
    "STL10_URL",
    "CifarArrays",
    "CifarDataset",
    "CifarNotFoundError",
    "Stl10Arrays",
    "Stl10NotFoundError",
    "TensorDataset",
    "crop_flip",
    "load_cifar",
    "load_stl10",
    "normalize",
    "split",
]
