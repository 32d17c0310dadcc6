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
workers. :func:`split` makes a seeded train/validation split.

The batches are pickles, and unpickling runs code named by the file: the
reader here only resolves the handful of NumPy globals an array needs, so a
tampered batch file fails with a ValueError instead of running anything else.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import int_in_range, positive_int

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
    "crop_flip",
    "load_cifar",
    "normalize",
    "split",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

#: Official archive URLs and MD5 checksums, read at download time.
ARCHIVE_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
ARCHIVE_MD5 = {
    "cifar10": "c58f30108f718f92721af3b95e74349a",
    "cifar100": "eb9058c3a382ffc7106e4002c42a8d85",
}


class _Spec(NamedTuple):
    title: str
    archive: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int


_SPECS = {
    "cifar10": _Spec(
        title="CIFAR-10",
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{k}" for k in range(1, 6)),
        test_files=("test_batch",),
        label_key="labels",
        num_classes=10,
    ),
    "cifar100": _Spec(
        title="CIFAR-100",
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        label_key="fine_labels",
        num_classes=100,
    ),
}
DATASETS = tuple(_SPECS)

_IMAGE_SHAPE = (3, 32, 32)
_PIXELS = 3 * 32 * 32


class CifarNotFoundError(FileNotFoundError):
    """The dataset is not on disk and could not (or may not) be downloaded.

    The message says which archive or directory to put where.
    """


@dataclass(frozen=True, eq=False)
class CifarArrays:
    """A CIFAR dataset as NumPy arrays, as returned by :func:`load_cifar`.

    Attributes:
        name: ``"cifar10"`` or ``"cifar100"``.
        num_classes: 10 or 100.
        train_images, test_images: ``uint8`` arrays of shape ``(N, 3, 32, 32)``.
        train_labels, test_labels: ``int64`` arrays of shape ``(N,)`` with
            values in ``[0, num_classes)``.
    """

    name: str
    num_classes: int
    train_images: np.ndarray = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    test_images: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)


# --------------------------------------------------------------------------- loading


def load_cifar(name: str, root: str | os.PathLike, download: bool = True) -> CifarArrays:
    """Load CIFAR-10 or CIFAR-100 from ``root``, extracting or downloading if needed.

    Looks for the extracted directory (``root/cifar-10-batches-py/`` or
    ``root/cifar-100-python/``) first, then for the archive
    (``root/cifar-10-python.tar.gz`` or ``root/cifar-100-python.tar.gz``),
    which it extracts into ``root``. With ``download=True`` and neither
    present, it downloads the official archive into ``root``, checks its MD5
    and extracts it. No checksum is asked of files already on disk.

    Args:
        name: ``"cifar10"`` or ``"cifar100"`` (case-insensitive).
        root: the data directory.
        download: whether to fetch the archive when the data is missing.

    Raises:
        CifarNotFoundError: (a :class:`FileNotFoundError`) if the data is
            missing and ``download`` is False or the download failed; the
            message says what to put where.
        ValueError: for an unknown ``name``, a downloaded archive with the
            wrong MD5 (the partial file is removed), an unsafe or unreadable
            archive, or a batch file that is not a valid CIFAR batch (the
            message names the file).
        TypeError: if ``name`` is not a string or ``download`` not a bool.
        NotADirectoryError: if ``root`` is an existing file.
    """
    key = _dataset_key(name)
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got {download!r}")
    spec = _SPECS[key]
    root = Path(os.fspath(root)).expanduser()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"root must be a directory, got the file {root}")
    folder = root / spec.folder
    if _missing_files(folder, spec):
        archive = root / spec.archive
        if not archive.is_file():
            if not download:
                raise CifarNotFoundError(
                    _not_found_message(spec, root) + "; or call with download=True"
                )
            _download_archive(key, spec, root)
        _extract(archive, root, spec)
    train_images, train_labels = _read_split(folder, spec.train_files, spec)
    test_images, test_labels = _read_split(folder, spec.test_files, spec)
    return CifarArrays(key, spec.num_classes, train_images, train_labels, test_images, test_labels)


def _dataset_key(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, one of {DATASETS}, got {name!r}")
    key = name.lower()
    if key not in _SPECS:
        raise ValueError(f"name must be one of {', '.join(map(repr, DATASETS))}, got {name!r}")
    return key


def _missing_files(folder: Path, spec: _Spec) -> list[str]:
    return [f for f in spec.train_files + spec.test_files if not (folder / f).is_file()]


def _not_found_message(spec: _Spec, root: Path) -> str:
    folder = root / spec.folder
    files = ", ".join(spec.train_files + spec.test_files)
    message = (
        f"{spec.title} not found: put {spec.archive} or the extracted {spec.folder}/ "
        f"directory (holding {files}) in {root}"
    )
    if folder.is_dir():
        message += f" ({folder} exists but lacks {', '.join(_missing_files(folder, spec))})"
    return message


# --------------------------------------------------------------------------- download


def _download(url: str, destination: Path) -> None:
    """Fetch ``url`` into the file ``destination`` (replaced in tests)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as file:
        shutil.copyfileobj(response, file, length=1 << 20)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_archive(key: str, spec: _Spec, root: Path) -> None:
    """Download into a temporary file in ``root``, check the MD5, then rename."""
    url, expected = ARCHIVE_URLS[key], ARCHIVE_MD5[key]
    root.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{spec.archive}.", suffix=".part", dir=root)
    os.close(handle)
    partial = Path(name)
    try:
        try:
            _download(url, partial)
        except OSError as error:  # URLError, HTTPError, timeouts, no network
            raise CifarNotFoundError(
                _not_found_message(spec, root) + f"; downloading {url} failed: {error}"
            ) from error
        actual = _md5(partial)
        if actual != expected:
            raise ValueError(
                f"downloaded {url} has MD5 {actual}, expected {expected}; the file was deleted"
            )
        os.replace(partial, root / spec.archive)
    finally:
        partial.unlink(missing_ok=True)


# --------------------------------------------------------------------------- extraction

# Python >= 3.10.12 / 3.11.4 can refuse links, devices and odd modes itself.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = member.name
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        raise ValueError(f"unsafe member {name!r} in archive {archive}: absolute path")
    if ".." in posix.parts or ".." in windows.parts:
        raise ValueError(f"unsafe member {name!r} in archive {archive}: '..' in path")
    if not (member.isfile() or member.isdir()):
        raise ValueError(
            f"unsafe member {name!r} in archive {archive}: only files and directories "
            f"are extracted, not links or devices"
        )


def _extract(archive: Path, root: Path, spec: _Spec) -> None:
    """Extract ``spec.folder/`` from ``archive`` into ``root``, refusing unsafe members.

    Every member is checked before anything is written; files are extracted
    into a staging directory in ``root`` and then moved into place, so an
    interrupted extraction leaves no truncated batch behind.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member, archive)
                wanted = [m for m in members if PurePosixPath(m.name).parts[:1] == (spec.folder,)]
                tar.extractall(staging, members=wanted, **_TAR_FILTER)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise ValueError(f"could not read archive {archive}: {error}") from error
        extracted = staging / spec.folder
        missing = _missing_files(extracted, spec)
        if missing:
            files = ", ".join(f"{spec.folder}/{f}" for f in missing)
            raise ValueError(f"archive {archive} lacks {files}")
        folder = root / spec.folder
        folder.mkdir(exist_ok=True)
        for path in extracted.iterdir():
            if path.is_file():
                os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- batch files

_NUMPY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocols 0-2 spell bytes under Python 3
    ("__builtin__", "bytes"),  # ... and empty bytes
    ("builtins", "bytes"),
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only what a NumPy array needs."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load the global {module}.{name}: a CIFAR batch holds only "
                f"NumPy arrays, lists, bytes and numbers"
            )
        return super().find_class(module, name)


def _get(batch: dict, key: str, path: Path) -> object:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    found = ", ".join(sorted(repr(k) for k in batch))
    raise ValueError(f"{path}: missing key {key!r} (found {found})")


def _read_batch(path: Path, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one pickled batch; return ``(images, labels)``."""
    with open(path, "rb") as file:
        try:
            batch = _BatchUnpickler(file, encoding="bytes").load()
        except Exception as error:  # truncated, corrupt or tampered: all mean "bad file"
            raise ValueError(
                f"{path}: not a readable CIFAR batch ({type(error).__name__}: {error})"
            ) from error
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    data = _get(batch, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = f"an array of dtype {data.dtype}" if isinstance(data, np.ndarray) else type(data)
        raise ValueError(f"{path}: 'data' must be a uint8 NumPy array, got {kind}")
    if data.ndim != 2 or data.shape[1] != _PIXELS:
        raise ValueError(f"{path}: 'data' must have shape (N, {_PIXELS}), got {data.shape}")
    try:
        labels = np.asarray(_get(batch, spec.label_key, path))
    except (TypeError, ValueError) as error:  # ragged lists and the like
        raise ValueError(
            f"{path}: {spec.label_key!r} is not a sequence of ints: {error}"
        ) from error
    if labels.size == 0:  # np.asarray([]) is float64
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{path}: {spec.label_key!r} must be a 1-D sequence of ints, "
            f"got shape {labels.shape} and dtype {labels.dtype}"
        )
    if len(labels) != len(data):
        raise ValueError(
            f"{path}: {len(labels)} {spec.label_key!r} for {len(data)} images in 'data'"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= spec.num_classes))
    if bad.size:
        index = int(bad[0])
        raise ValueError(
            f"{path}: {spec.label_key!r} must lie in [0, {spec.num_classes}), "
            f"got {labels[index]} at index {index}"
        )
    return data.reshape(-1, *_IMAGE_SHAPE), labels.astype(np.int64)


def _read_split(folder: Path, files: tuple[str, ...], spec: _Spec) -> tuple[np.ndarray, ...]:
    parts = [_read_batch(folder / f, spec) for f in files]
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


# --------------------------------------------------------------------------- batch transforms


def crop_flip(
    images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int = 4
) -> torch.Tensor:
    """Crop each image from its zero-padded copy at ``offsets`` and mirror it where ``flips``.

    The batch is padded once and every crop (and flip) is taken with a single
    advanced-indexing gather.

    Args:
        images: ``(B, C, H, W)``, any dtype.
        offsets: ``(B, 2)`` integer ``(row, column)`` of each crop's corner in
            the padded image, in ``[0, 2 * padding]``; ``padding`` in both is
            the centre crop, the image itself.
        flips: ``(B,)`` bool, whether to mirror each image left-right.
        padding: zero pixels added on each side.

    Returns:
        a tensor shaped and typed like ``images``.
    """
    padding = int_in_range("padding", padding, 0)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    batch, channels, height, width = images.shape
    if offsets.shape != (batch, 2) or flips.shape != (batch,):
        raise ValueError(
            f"offsets must have shape ({batch}, 2) and flips ({batch},), "
            f"got {tuple(offsets.shape)} and {tuple(flips.shape)}"
        )
    padded = F.pad(images, (padding,) * 4) if padding else images
    device = images.device
    offsets, flips = offsets.to(device), flips.to(device)
    rows = offsets[:, 0, None] + torch.arange(height, device=device)
    columns = torch.arange(width, device=device).expand(batch, width)
    columns = torch.where(flips[:, None], width - 1 - columns, columns) + offsets[:, 1, None]
    return padded[
        torch.arange(batch, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        columns[:, None, None, :],
    ]


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Map ``uint8`` images to float32 ``(images / 255 - mean) / std``, per channel.

    ``mean`` and ``std`` broadcast against ``images`` (e.g. shape ``(1, C, 1, 1)``).
    """
    return images.to(torch.float32).div_(255).sub_(mean).div_(std)


# --------------------------------------------------------------------------- datasets


def _channel_stats(name: str, values: object, channels: int, positive: bool) -> tuple:
    try:
        stats = tuple(float(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a sequence of {channels} floats, got {values!r}"
        ) from error
    if len(stats) != channels or not all(math.isfinite(v) for v in stats):
        raise ValueError(
            f"{name} must hold {channels} finite floats (one per channel), got {stats}"
        )
    if positive and min(stats) <= 0:
        raise ValueError(f"{name} must be positive, got {stats}")
    return stats


def _as_tensor(name: str, value: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value if value.flags.writeable else value.copy())
    raise TypeError(f"{name} must be a torch.Tensor or NumPy array, got {type(value).__name__}")


class CifarDataset:
    """Images held as one ``uint8`` tensor on a device, served as mini-batches.

    Args:
        images: ``uint8`` array or tensor of shape ``(N, C, H, W)``.
        labels: integer array or tensor of shape ``(N,)``; stored as int64.
        num_classes: if given, every label must lie in ``[0, num_classes)``.
        device: where the images and labels live (default: where ``images``
            is; CPU for NumPy input). They are copied there once.
        mean, std: per-channel statistics used by :meth:`batches` to
            normalise (default: the usual CIFAR-10 values).

    Raises:
        TypeError: if ``images`` or ``labels`` is neither a tensor nor an array.
        ValueError: for a wrong dtype or shape, a label count that differs
            from the image count, a label out of range, or bad ``mean``/``std``.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        num_classes: int | None = None,
        device: torch.device | str | None = None,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> None:
        images, labels = _as_tensor("images", images), _as_tensor("labels", labels)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be a uint8 tensor of shape (N, C, H, W), "
                f"got dtype {images.dtype} and shape {tuple(images.shape)}"
            )
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(
                f"labels must be a 1-D integer tensor, got dtype {labels.dtype} "
                f"and shape {tuple(labels.shape)}"
            )
        if len(labels) != len(images):
            raise ValueError(f"labels has {len(labels)} entries for {len(images)} images")
        if num_classes is not None:
            num_classes = positive_int("num_classes", num_classes)
            bad = torch.nonzero((labels < 0) | (labels >= num_classes)).flatten()
            if bad.numel():
                index = int(bad[0])
                raise ValueError(
                    f"labels must lie in [0, {num_classes}), got {int(labels[index])} "
                    f"at index {index}"
                )
        channels = images.shape[1]
        mean = _channel_stats("mean", mean, channels, positive=False)
        std = _channel_stats("std", std, channels, positive=True)
        device = images.device if device is None else torch.device(device)
        self.images = images.to(device).contiguous()
        self.labels = labels.to(device=device, dtype=torch.int64)
        self.num_classes = num_classes
        self.mean, self.std = mean, std
        self._mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    @property
    def device(self) -> torch.device:
        """The device holding the images and labels."""
        return self.images.device

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        shape = tuple(self.images.shape)
        return (
            f"{type(self).__name__}(images={shape}, num_classes={self.num_classes}, "
            f"device={self.device})"
        )

    def subset(self, indices: Sequence[int] | torch.Tensor) -> CifarDataset:
        """A new dataset holding the images at ``indices`` (copied, same device and stats)."""
        indices = torch.as_tensor(indices, dtype=torch.int64).to(self.device)
        return CifarDataset(
            self.images[indices],
            self.labels[indices],
            num_classes=self.num_classes,
            mean=self.mean,
            std=self.std,
        )

    def to(self, device: torch.device | str) -> CifarDataset:
        """This dataset moved to ``device`` (``self`` if already there)."""
        if torch.device(device) == self.device:
            return self
        return CifarDataset(self.images, self.labels, self.num_classes, device, self.mean, self.std)

    def index_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> list[torch.Tensor]:
        """The dataset indices of one epoch's mini-batches for this rank, on :attr:`device`.

        With ``shuffle`` the epoch order is ``torch.randperm`` drawn from
        ``generator`` (a CPU generator; the global one if None), so ranks
        that share a seed share the permutation. Rank ``r`` takes positions
        ``r, r + world_size, ...`` of it. If the dataset does not split evenly
        the permutation is either cut (``drop_last=True``) or extended by
        wrapping around (``drop_last=False``), so that every rank gets the
        same number of indices and hence of batches. ``drop_last`` also drops
        the rank's last, incomplete batch.

        Raises:
            ValueError: naming ``batch_size``, ``rank`` or ``world_size``.
            TypeError: if ``generator`` is not a CPU ``torch.Generator``.
        """
        batch_size = positive_int("batch_size", batch_size)
        world_size = positive_int("world_size", world_size)
        rank = int_in_range("rank", rank, 0, world_size)
        if generator is not None and (
            not isinstance(generator, torch.Generator) or generator.device.type != "cpu"
        ):
            raise TypeError(f"generator must be a CPU torch.Generator or None, got {generator!r}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if drop_last:
            per_rank = n // world_size
        else:
            per_rank = -(-n // world_size)
            if per_rank * world_size > n:  # wrap around, as DistributedSampler does
                order = order.repeat(-(-per_rank * world_size // n))
        mine = order[rank : per_rank * world_size : world_size]
        if drop_last:
            mine = mine[: len(mine) - len(mine) % batch_size]
        if not len(mine):  # torch.split would give one empty batch
            return []
        return list(torch.split(mine.to(self.device), batch_size))

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        augment: bool = False,
        padding: int = 4,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of ``(images, labels)`` mini-batches: float32 normalised images, int64 labels.

        The order (and sharding) is that of :meth:`index_batches`, which is
        called first with the same arguments. With ``augment`` each image is
        then randomly cropped from its ``padding``-pixel zero-padded copy and
        mirrored left-right with probability 1/2 (:func:`crop_flip`); these
        draws are made for the whole epoch at once, after the permutation,
        from the same ``generator``, so a seeded generator reproduces the
        epoch exactly. Call again with the same generator for the next epoch.

        All random numbers are drawn and all arguments checked when this is
        called, not when the iterator is first advanced.
        """
        padding = int_in_range("padding", padding, 0)
        groups = self.index_batches(
            batch_size,
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        offsets = flips = None
        if augment:
            n = len(self)
            offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
            flips = torch.rand(n, generator=generator) < 0.5
            offsets, flips = offsets.to(self.device), flips.to(self.device)
        return self._serve(groups, offsets, flips, padding)

    def _serve(
        self,
        groups: list[torch.Tensor],
        offsets: torch.Tensor | None,
        flips: torch.Tensor | None,
        padding: int,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for indices in groups:
            images = self.images[indices]
            if offsets is not None and flips is not None:
                images = crop_flip(images, offsets[indices], flips[indices], padding)
            yield normalize(images, self._mean, self._std), self.labels[indices]


def split(dataset: CifarDataset, num_val: int, seed: int = 0) -> tuple[CifarDataset, CifarDataset]:
    """Split ``dataset`` at random into ``(train, val)`` with ``num_val`` validation images.

    The split depends only on ``seed`` and ``len(dataset)``; both parts keep
    the original order. The DynamicBlocks experiments used
    ``split(cifar_train, 10_000)``: 40k training and 10k validation images.

    Raises:
        TypeError: if ``dataset`` is not a :class:`CifarDataset`.
        ValueError: if ``num_val`` is not an int in ``[0, len(dataset))`` or
            ``seed`` is not a non-negative int.
    """
    if not isinstance(dataset, CifarDataset):
        raise TypeError(f"dataset must be a CifarDataset, got {type(dataset).__name__}")
    n = len(dataset)
    num_val = int_in_range(f"num_val (for a dataset of {n} images)", num_val, 0, n)
    seed = int_in_range("seed", seed, 0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:num_val].sort().values, order[num_val:].sort().values
    return dataset.subset(train), dataset.subset(val)
