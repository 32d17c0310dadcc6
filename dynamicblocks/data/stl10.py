"""STL-10 on disk: the official binary files, checked and loaded as NumPy arrays.

The archive ``stl10_binary.tar.gz`` holds a folder ``stl10_binary/`` of raw
files: ``train_X.bin`` (5,000 images), ``train_y.bin``, ``test_X.bin``
(8,000), ``test_y.bin`` and ``unlabeled_X.bin`` (100,000 images without
labels). An image file is a run of 96x96 colour images, 3 * 96 * 96 bytes
each, channel after channel, each channel stored column by column; a label
file holds one byte per image, the classes numbered 1 to 10. Nothing is
downloaded here: the machine that trains may have no network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["STL10_URL", "Stl10Arrays", "Stl10NotFoundError", "load_stl10"]

#: Where the official archive is published.
STL10_URL = "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"

_ARCHIVE = "stl10_binary.tar.gz"
_FOLDER = "stl10_binary"
_SPLITS = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")}
_UNLABELED = "unlabeled_X.bin"
_ALL_FILES = (*(f for pair in _SPLITS.values() for f in pair), _UNLABELED)
_NUM_CLASSES = 10
_IMAGE_SHAPE = (3, 96, 96)
_IMAGE_BYTES = 3 * 96 * 96
_CHUNK = 1024  # images per read: about 28 MB of buffer on top of the result


class Stl10NotFoundError(FileNotFoundError):
    """STL-10's files are not on disk.

    The message names the missing files, where to get the archive and how to
    extract it.
    """


@dataclass(frozen=True, eq=False)
class Stl10Arrays:
    """STL-10 as NumPy arrays, as returned by :func:`load_stl10`.

    The fields are those of :class:`~dynamicblocks.data.CifarArrays`, so the
    two are used alike, plus the optional unlabeled split.

    Attributes:
        name: ``"stl10"``.
        num_classes: 10.
        train_images, test_images: ``uint8`` arrays of shape ``(N, 3, 96, 96)``
            (channels, rows, columns), C-contiguous.
        train_labels, test_labels: ``int64`` arrays of shape ``(N,)`` with
            values in ``[0, 10)``: the file's label minus 1.
        unlabeled_images: the ``uint8`` array ``(100000, 3, 96, 96)`` of
            ``unlabeled_X.bin`` when asked for, else None.
    """

    name: str
    num_classes: int
    train_images: np.ndarray = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    test_images: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    unlabeled_images: np.ndarray | None = field(default=None, repr=False)


def load_stl10(root: str | os.PathLike, unlabeled: bool = False) -> Stl10Arrays:
    """Load STL-10 from its official binary files.

    ``root`` is the data directory that holds the extracted ``stl10_binary/``
    folder, or that folder itself: ``root/stl10_binary/`` is used when it
    exists, else ``root`` when it is named ``stl10_binary`` or holds one of
    the STL-10 files. Get the archive from :data:`STL10_URL` and extract it
    with ``tar -xzf stl10_binary.tar.gz -C DATA_DIR``.

    Images are returned as ``(N, 3, 96, 96)`` arrays of (channel, row,
    column): the files store each channel column by column, which is
    transposed here. Labels 1..10 in the files become 0..9. Each image file
    is read in chunks into an array allocated once from the file's size, so
    the memory used is that of the result plus a few tens of megabytes.

    Args:
        root: the data directory, or its ``stl10_binary/`` folder.
        unlabeled: also load ``unlabeled_X.bin`` (100,000 images, 2.8 GB)
            into :attr:`Stl10Arrays.unlabeled_images`; it is neither read nor
            required otherwise.

    Raises:
        Stl10NotFoundError: (a :class:`FileNotFoundError`) if the folder or a
            file it needs is missing; the message names them and says where
            to get the archive and how to extract it.
        ValueError: naming the file, for an empty image file or one whose
            size is not a multiple of 3 * 96 * 96 bytes, a label file whose
            size is not the number of images, or a label outside 1..10.
        TypeError: if ``unlabeled`` is not a bool.
        NotADirectoryError: if ``root`` is an existing file.
    """
    if not isinstance(unlabeled, bool):
        raise TypeError(f"unlabeled must be a bool, got {unlabeled!r}")
    root = Path(os.fspath(root)).expanduser()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"root must be a directory, got the file {root}")
    folder = _find_folder(root)
    wanted = _ALL_FILES if unlabeled else _ALL_FILES[:-1]
    missing = [f for f in wanted if not (folder / f).is_file()]
    if missing:
        raise Stl10NotFoundError(_not_found_message(folder, missing))
    train_images, train_labels = _read_split(folder, *_SPLITS["train"])
    test_images, test_labels = _read_split(folder, *_SPLITS["test"])
    extra = _read_images(folder / _UNLABELED) if unlabeled else None
    return Stl10Arrays(
        "stl10", _NUM_CLASSES, train_images, train_labels, test_images, test_labels, extra
    )


def _find_folder(root: Path) -> Path:
    nested = root / _FOLDER
    if nested.is_dir():
        return nested
    if root.name == _FOLDER or any(os.path.lexists(root / f) for f in _ALL_FILES):
        return root
    return nested


def _not_found_message(folder: Path, missing: list[str]) -> str:
    where = (
        f"{folder} lacks {', '.join(missing)}"
        if folder.is_dir()
        else f"{folder} does not exist (it should hold {', '.join(missing)})"
    )
    data_dir = folder.parent
    return (
        f"STL-10 not found: {where}; download {STL10_URL} and extract it with "
        f"`tar -xzf {_ARCHIVE} -C {data_dir}`, which creates {data_dir / _FOLDER}/; "
        f"then pass {data_dir} (or {data_dir / _FOLDER}) as root"
    )


def _read_split(folder: Path, images_file: str, labels_file: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read_images(folder / images_file)
    labels = _read_labels(folder / labels_file, len(images), images_file)
    return images, labels


def _read_images(path: Path) -> np.ndarray:
    """The images of one ``*_X.bin`` file as a C-contiguous ``(N, 3, 96, 96)`` uint8 array."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            raise ValueError(
                f"{path}: the file is empty; expected {_IMAGE_BYTES} bytes "
                f"(3*96*96) per image, at least one image"
            )
        if size % _IMAGE_BYTES:
            raise ValueError(
                f"{path}: {size} bytes is not a multiple of {_IMAGE_BYTES} (3*96*96 bytes per "
                f"image; {size // _IMAGE_BYTES} whole images and {size % _IMAGE_BYTES} bytes "
                f"over): truncated or not an STL-10 image file"
            )
        count = size // _IMAGE_BYTES
        images = np.empty((count, *_IMAGE_SHAPE), np.uint8)
        buffer = bytearray(min(count, _CHUNK) * _IMAGE_BYTES)
        for start in range(0, count, _CHUNK):
            stop = min(start + _CHUNK, count)
            view = memoryview(buffer)[: (stop - start) * _IMAGE_BYTES]
            read = file.readinto(view)
            if read != len(view):
                raise ValueError(
                    f"{path}: the file ended after {start * _IMAGE_BYTES + read} of its "
                    f"{size} bytes while being read"
                )
            chunk = np.frombuffer(view, np.uint8).reshape(-1, *_IMAGE_SHAPE)
            images[start:stop] = chunk.transpose(0, 1, 3, 2)  # column-major to row-major
    return images


def _read_labels(path: Path, count: int, images_file: str) -> np.ndarray:
    """The labels of one ``*_y.bin`` file, checked to be ``count`` bytes in 1..10, minus 1."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size != count:
            empty = " (the file is empty)" if size == 0 else ""
            raise ValueError(
                f"{path}: {size} labels{empty} for the {count} images of {images_file}; "
                f"expected one byte per image"
            )
        raw = np.frombuffer(file.read(count), np.uint8)
    if len(raw) != count:
        raise ValueError(f"{path}: the file ended after {len(raw)} of its {count} bytes")
    bad = np.flatnonzero((raw < 1) | (raw > _NUM_CLASSES))
    if bad.size:
        index = int(bad[0])
        raise ValueError(
            f"{path}: labels must lie in 1..{_NUM_CLASSES} (STL-10 numbers its classes "
            f"from 1), got {raw[index]} at index {index}"
        )
    return raw.astype(np.int64) - 1
