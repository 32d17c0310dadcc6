"""CIFAR-10/100 on disk: where the files are, downloading, safe extraction, loading."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from .batchfile import Spec, read_split

__all__ = [
    "ARCHIVE_MD5",
    "ARCHIVE_URLS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATASETS",
    "CifarArrays",
    "CifarNotFoundError",
    "load_cifar",
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


_SPECS = {
    "cifar10": Spec(
        title="CIFAR-10",
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{k}" for k in range(1, 6)),
        test_files=("test_batch",),
        label_key="labels",
        num_classes=10,
    ),
    "cifar100": Spec(
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
    and extracts it. No checksum is asked of files already on disk, and
    extraction never replaces them: only the batch files missing from the
    directory are taken from the archive.

    Hidden leftovers of an extraction or download that was killed
    (``.cifar-10-batches-py.XXXXXXXX.part/``,
    ``.cifar-10-python.tar.gz.XXXXXXXX.part`` and their CIFAR-100
    counterparts, exactly as this module names them) are removed from
    ``root`` first, once an hour has passed since they were last written,
    so that another process's extraction or download in progress (each
    rank of a ``torchrun`` job loads the data) is left alone.

    Args:
        name: ``"cifar10"`` or ``"cifar100"`` (case-insensitive).
        root: the data directory.
        download: whether to fetch the archive when the data is missing.

    Raises:
        CifarNotFoundError: (a :class:`FileNotFoundError`) if the data is
            missing and ``download`` is False or the download failed; the
            message says what to put where. Also if a batch file's name in
            the directory is taken by something that is not a file, which
            extraction leaves alone.
        ValueError: for an unknown ``name``, a downloaded archive with the
            wrong MD5 (the partial file is removed), an unsafe or unreadable
            archive, or a batch file that is not a valid CIFAR batch (the
            message names the file), including one whose pickle describes
            far more than the file holds: it is refused before it is built.
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
    _remove_leftovers(root, spec)
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
    train_images, train_labels = read_split(folder, spec.train_files, spec)
    test_images, test_labels = read_split(folder, spec.test_files, spec)
    return CifarArrays(key, spec.num_classes, train_images, train_labels, test_images, test_labels)


def _dataset_key(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, one of {DATASETS}, got {name!r}")
    key = name.lower()
    if key not in _SPECS:
        raise ValueError(f"name must be one of {', '.join(map(repr, DATASETS))}, got {name!r}")
    return key


def _missing_files(folder: Path, spec: Spec) -> list[str]:
    return [f for f in spec.train_files + spec.test_files if not (folder / f).is_file()]


def _not_found_message(spec: Spec, root: Path) -> str:
    folder = root / spec.folder
    files = ", ".join(spec.train_files + spec.test_files)
    message = (
        f"{spec.title} not found: put {spec.archive} or the extracted {spec.folder}/ "
        f"directory (holding {files}) in {root}"
    )
    if folder.is_dir():
        message += f" ({folder} exists but lacks {', '.join(_missing_files(folder, spec))})"
    return message


# --------------------------------------------------------------------------- leftovers

#: The suffix of a partial download (a file) or extraction (a directory) in ``root``.
_PARTIAL = ".part"
#: Seconds since a leftover was last written before it counts as abandoned.
_LEFTOVER_AGE = 3600.0


def _leftover_pattern(name: str) -> re.Pattern[str]:
    """The names :func:`tempfile.mkstemp`/``mkdtemp`` give with prefix ``.name.`` and our suffix.

    Their random part is 8 characters from ``[a-z0-9_]``.
    """
    return re.compile(re.escape(f".{name}.") + "[a-z0-9_]{8}" + re.escape(_PARTIAL))


def _remove_leftovers(root: Path, spec: Spec) -> None:
    """Remove the staging directories and partial downloads of interrupted loads from ``root``.

    Only entries named exactly as :func:`_extract` (a directory, not a link)
    and :func:`_download_archive` (a regular file) name theirs, and only once
    unmodified for :data:`_LEFTOVER_AGE` seconds: a younger one may belong to
    another process at work. Errors are ignored: this is tidying up.
    """
    staging, download = _leftover_pattern(spec.folder), _leftover_pattern(spec.archive)
    try:
        entries = list(os.scandir(root))
    except OSError:  # no root yet, or unreadable: nothing to tidy
        return
    cutoff = time.time() - _LEFTOVER_AGE
    for entry in entries:
        is_staging = staging.fullmatch(entry.name) is not None
        if not (is_staging or download.fullmatch(entry.name)):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                continue
            if is_staging and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif not is_staging and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:  # removed meanwhile by another process, or not ours to remove
            pass


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


def _download_archive(key: str, spec: Spec, root: Path) -> None:
    """Download into a temporary file in ``root``, check the MD5, then rename."""
    url, expected = ARCHIVE_URLS[key], ARCHIVE_MD5[key]
    root.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{spec.archive}.", suffix=_PARTIAL, dir=root)
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


def _extract(archive: Path, root: Path, spec: Spec) -> None:
    """Extract what ``root/spec.folder/`` lacks from ``archive``, refusing unsafe members.

    Every member is checked before anything is written; the archive's folder
    is extracted into a staging directory in ``root``
    (``.<folder>.XXXXXXXX.part``) and only the files that the destination
    lacks are then moved into place: a file already there, the user's own or
    re-encoded copy, is never replaced. An interrupted extraction leaves no
    truncated batch behind, only the staging directory, which a later
    :func:`load_cifar` removes.

    Raises:
        ValueError: if the archive is unreadable, unsafe or lacks a batch.
        CifarNotFoundError: if a batch is still missing afterwards because
            something that is not a file (a directory, a broken link) has
            its name.
    """
    folder = root / spec.folder
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.", suffix=_PARTIAL, dir=root))
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
        folder.mkdir(exist_ok=True)
        for path in sorted(extracted.iterdir()):
            target = folder / path.name
            if path.is_file() and not os.path.lexists(target):  # a link counts as there
                os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    blocked = _missing_files(folder, spec)
    if blocked:
        raise CifarNotFoundError(
            f"{folder / blocked[0]} exists but is not a file, so the copy in {archive} was not "
            f"put in its place; move it away and load again"
        )
