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
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import math
import os
import pickle
import re
import reprlib
import shutil
import struct
import tarfile
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO, NamedTuple, NoReturn, cast

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
    "TensorDataset",
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


def _remove_leftovers(root: Path, spec: _Spec) -> None:
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


def _download_archive(key: str, spec: _Spec, root: Path) -> None:
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


def _extract(archive: Path, root: Path, spec: _Spec) -> None:
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


# --------------------------------------------------------------------------- batch files
#
# A batch file is a pickle, and a pickle is a program: besides calling what it
# names, it can refer back to any object it built (the memo), so a few bytes
# can describe a huge object graph, such as ``[row] * 100_000`` or a tuple
# nested 60 deep whose hash visits 2**60 leaves. The reader below is
# :mod:`pickle`'s pure-Python unpickler with its dangerous instructions
# replaced, so that what it builds, and the time it takes, stay proportional to
# the file's size: the only callables are checked stand-ins for the few NumPy
# helpers an array's pickle names, none of which allocates more than the file
# holds; dict keys must be plain values (no tuple hashing); sets, class
# instances, persistent ids and extension codes are refused; and no length
# read from the file may run past its end. The labels are then checked to be a
# flat list (or 1-D array) of ints, one per image, before NumPy sees them.


class _ArrayClass:
    """What ``numpy.ndarray`` resolves to in a batch: an argument for ``_reconstruct`` only.

    The real class would let the pickle call ``ndarray(shape)``, which
    allocates the whole shape without a byte of it being in the file.
    """

    __slots__ = ()

    def __call__(self, *args: object) -> NoReturn:
        _refuse("to call numpy.ndarray, which allocates its whole shape")

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _ArrayClass()
_DTYPE_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes and str: no objects, no structs
_SCALAR_KINDS = "biufc"
_MAX_DIMS = 32
_KEY_TYPES = (str, bytes, int, float, bool, type(None))  # hashed in time linear in their size


def _refuse(what: str) -> NoReturn:
    raise pickle.UnpicklingError(
        f"refusing {what}: a CIFAR batch holds only NumPy arrays, lists, bytes and numbers"
    )


def _is_shape(shape: object) -> bool:
    return (
        type(shape) is tuple
        and len(shape) <= _MAX_DIMS
        and all(type(n) is int and 0 <= n < 1 << 62 for n in shape)
    )


def _array_dtype(dtype: object) -> np.dtype:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _DTYPE_KINDS:
        _refuse(f"an array of dtype {dtype!r}")
    return dtype


def _reconstruct(subtype: object, shape: object, dtype: object) -> np.ndarray:
    """``numpy._core.multiarray._reconstruct`` as NumPy pickles every array: an empty start."""
    if subtype is not _NDARRAY or type(shape) is not tuple or shape != (0,):
        _refuse("a _reconstruct call other than _reconstruct(numpy.ndarray, (0,), ...)")
    return np.empty(0, np.int8)  # BUILD then gives it its shape, dtype and bytes


def _dtype(spec: object, align: object = False, copy: object = True) -> np.dtype:
    """``numpy.dtype(spec, align, copy)`` for the plain dtypes of :data:`_DTYPE_KINDS`.

    Always a fresh copy: with ``copy=False`` NumPy returns its shared
    descriptor, which the BUILD that follows would then modify for everyone.
    """
    if type(spec) is bytes:  # a Python 2 str
        spec = spec.decode("ascii")
    if type(spec) is not str or len(spec) > 16:
        _refuse(f"the dtype {spec!r}")
    dtype = np.dtype(spec)
    if dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        _refuse(f"the dtype {spec!r}")
    return np.dtype(spec, False, True)


def _scalar(dtype: object, data: object = None) -> np.generic:
    """``numpy._core.multiarray.scalar``: a number from exactly its own bytes."""
    if (
        not isinstance(dtype, np.dtype)
        or dtype.kind not in _SCALAR_KINDS
        or type(data) is not bytes
        or len(data) != dtype.itemsize
    ):
        _refuse(f"a NumPy scalar of dtype {dtype!r} from {type(data).__name__}")
    return np.frombuffer(data, dtype)[0]


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """``numpy._core.numeric._frombuffer`` (protocol 5): a view of bytes from the file."""
    if type(buffer) not in (bytes, bytearray) or not _is_shape(shape) or order not in ("C", "F"):
        _refuse("a _frombuffer call with these arguments")
    return np.frombuffer(buffer, _array_dtype(dtype)).reshape(shape, order=order)


def _encode(text: object, encoding: object = "utf-8") -> bytes:
    """``_codecs.encode(text, "latin1")``, how protocols 0-2 write bytes under Python 3."""
    if type(text) is not str or type(encoding) is not str or encoding != "latin1":
        _refuse(f"_codecs.encode of a {type(text).__name__} to {encoding!r}")
    return text.encode("latin-1")


def _empty_bytes(*args: object) -> bytes:
    """``bytes()``, how protocols 0-2 write ``b""``; ``bytes(n)`` would allocate n bytes."""
    if args:
        _refuse("a bytes() call with arguments")
    return b""


_BATCH_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}
for _core in ("numpy.core", "numpy._core"):  # NumPy 1 wrote numpy.core, NumPy 2 numpy._core
    _BATCH_GLOBALS[f"{_core}.multiarray", "_reconstruct"] = _reconstruct
    _BATCH_GLOBALS[f"{_core}.multiarray", "scalar"] = _scalar
    _BATCH_GLOBALS[f"{_core}.numeric", "_frombuffer"] = _frombuffer


def _check_array_state(array: np.ndarray, state: object) -> None:
    """``ndarray.__setstate__(state)`` may only fill an empty array with bytes from the file."""
    if array.size or array.base is not None:
        _refuse("to set the state of an array other than a fresh, empty one")
    if type(state) is not tuple or len(state) not in (4, 5):
        _refuse("an array state that is not a 4- or 5-tuple")
    shape, dtype, _, data = state[-4:]
    if not _is_shape(shape) or type(data) is not bytes:
        _refuse("an array state other than (version, shape, dtype, fortran, bytes)")
    if math.prod(shape) * _array_dtype(dtype).itemsize != len(data):
        _refuse(f"an array of shape {shape} and dtype {dtype} from {len(data)} bytes")


def _check_dtype_state(dtype: np.dtype, state: object) -> None:
    """``dtype.__setstate__(state)`` may only set the byte order of a plain dtype."""
    flexible = dtype.kind in "SU"
    if (
        type(state) is not tuple
        or len(state) not in (8, 9)
        or state[0] not in (3, 4)
        or state[1] not in ("<", ">", "|", "=", b"<", b">", b"|", b"=")
        or state[2:5] != (None, None, None)  # subarray, names, fields
        or not all(type(value) is int for value in state[5:8])
        or state[5] not in ((dtype.itemsize,) if flexible else (-1, dtype.itemsize))
        or state[6] not in ((dtype.alignment,) if flexible else (-1, dtype.alignment))
        or state[7] != dtype.flags
        or state[8:] not in ((), (None,))  # metadata
    ):
        _refuse(f"this state for the dtype {dtype}")


def _refused_instruction(name: str) -> Callable[[pickle._Unpickler], None]:
    def load(self: pickle._Unpickler) -> None:
        _refuse(f"the pickle instruction {name}")

    return load


def _check_target(target: object, kind: type, action: str) -> None:
    if type(target) is not kind:
        _refuse(f"to {action} a {type(target).__name__}")


def _check_keys(keys: Sequence[object]) -> None:
    for key in keys:
        if type(key) not in _KEY_TYPES:
            _refuse(f"a dict key of type {type(key).__name__}")


class _BoundedReader:
    """A binary file's ``read``/``readline`` that refuse lengths beyond its end.

    Without this a length field of 2**40 would make the reader allocate that
    much before finding the file short.
    """

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._left = size

    def read(self, size: int) -> bytes:
        if not 0 <= size <= self._left:
            raise pickle.UnpicklingError(
                f"a length of {size} bytes runs past the end of the file ({self._left} left)"
            )
        data = self._file.read(size)
        self._left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self._file.readline()
        self._left -= len(line)
        return line


class _BatchUnpickler(pickle._Unpickler):
    """Unpickles a CIFAR batch in memory and time bounded by the file's size.

    It extends :mod:`pickle`'s pure-Python unpickler (``pickle._Unpickler``,
    the fallback of the C one, with the same behaviour), whose ``dispatch``
    table of instructions, unlike the C one's, can be changed.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> object:
        try:
            return _BATCH_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load the global {module}.{name}: a CIFAR batch holds only "
                f"NumPy arrays, lists, bytes and numbers"
            ) from None

    for _name in (  # sets (hashing), instances, persistent ids, extension codes: not in a batch
        "EMPTY_SET",
        "ADDITEMS",
        "FROZENSET",
        "INST",
        "OBJ",
        "NEWOBJ",
        "NEWOBJ_EX",
        "PERSID",
        "BINPERSID",
        "EXT1",
        "EXT2",
        "EXT4",
    ):
        dispatch[getattr(pickle, _name)[0]] = _refused_instruction(_name)

    def _load_setitem(self) -> None:
        _check_target(self.stack[-3], dict, "set items of")
        _check_keys(self.stack[-2:-1])
        super().load_setitem()

    def _load_setitems(self) -> None:  # the items follow a mark; the dict is below it
        _check_target(self.metastack[-1][-1], dict, "set items of")
        _check_keys(self.stack[::2])
        super().load_setitems()

    def _load_dict(self) -> None:  # protocol 0: a new dict of the items after the mark
        _check_keys(self.stack[::2])
        super().load_dict()

    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.DICT[0]] = _load_dict

    def _load_append(self) -> None:
        _check_target(self.stack[-2], list, "append to")
        super().load_append()

    def _load_appends(self) -> None:
        _check_target(self.metastack[-1][-1], list, "append to")
        super().load_appends()

    dispatch[pickle.APPEND[0]] = _load_append
    dispatch[pickle.APPENDS[0]] = _load_appends

    def _load_build(self) -> None:
        state, target = self.stack[-1], self.stack[-2]
        if type(target) is np.ndarray:
            _check_array_state(target, state)
        elif isinstance(target, np.dtype):
            _check_dtype_state(target, state)
        else:
            _refuse(f"to set the state of a {type(target).__name__}")
        target.__setstate__(state)
        del self.stack[-1]

    dispatch[pickle.BUILD[0]] = _load_build

    def _load_bytearray8(self) -> None:  # the original allocates the length first
        (size,) = struct.unpack("<Q", self.read(8))
        data = self.read(size)
        if len(data) != size:
            raise pickle.UnpicklingError(f"BYTEARRAY8 of {size} bytes is truncated")
        self.append(bytearray(data))

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8
    del _name


def _get(batch: dict, key: str, path: Path) -> object:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    found = [reprlib.repr(k) for k in itertools.islice(batch, 20)]
    more = f" and {len(batch) - len(found)} more" if len(batch) > len(found) else ""
    raise ValueError(f"{path}: missing key {key!r} (found {', '.join(sorted(found))}{more})")


def _read_labels(value: object, count: int, path: Path, spec: _Spec) -> np.ndarray:
    """The labels as int64, checked to be ``count`` ints in range before NumPy converts them.

    ``np.asarray`` of a list that repeats one row by reference would expand
    every repetition; a flat list is checked item by item instead, in time
    linear in its length, which the file bounds.
    """
    key = spec.label_key
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or not np.issubdtype(value.dtype, np.integer):
            raise ValueError(
                f"{path}: {key!r} must be a 1-D sequence of ints, "
                f"got shape {value.shape} and dtype {value.dtype}"
            )
    elif type(value) not in (list, tuple):
        raise ValueError(
            f"{path}: {key!r} must be a list of ints or a 1-D integer array, "
            f"got {type(value).__name__}"
        )
    items = cast(Sequence[object], value)
    if len(items) != count:
        raise ValueError(f"{path}: {len(items)} {key!r} for {count} images in 'data'")
    if isinstance(value, np.ndarray):
        labels = value
    else:
        if not all(kind is int or issubclass(kind, np.integer) for kind in set(map(type, items))):
            index = next(i for i, item in enumerate(items) if not _is_int(item))
            raise ValueError(
                f"{path}: {key!r} is not a sequence of ints: item {index} is a "
                f"{type(items[index]).__name__}; expected a flat list of {count} ints"
            )
        try:
            labels = np.array(items, dtype=np.int64)
        except OverflowError as error:
            raise ValueError(
                f"{path}: {key!r} must lie in [0, {spec.num_classes}), got an int beyond int64"
            ) from error
    bad = np.flatnonzero((labels < 0) | (labels >= spec.num_classes))
    if bad.size:
        index = int(bad[0])
        raise ValueError(
            f"{path}: {key!r} must lie in [0, {spec.num_classes}), "
            f"got {labels[index]} at index {index}"
        )
    return labels.astype(np.int64)


def _is_int(value: object) -> bool:
    return type(value) is int or isinstance(value, np.integer)


def _read_batch(path: Path, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one pickled batch; return ``(images, labels)``."""
    with open(path, "rb") as file:
        reader = _BoundedReader(file, os.fstat(file.fileno()).st_size)
        try:
            batch = _BatchUnpickler(reader, encoding="bytes").load()
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
    labels = _read_labels(_get(batch, spec.label_key, path), len(data), path, spec)
    return data.reshape(-1, *_IMAGE_SHAPE), labels


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
        try:
            return torch.from_numpy(value if value.flags.writeable else value.copy())
        except (TypeError, ValueError):  # object or string dtype; negative strides
            try:
                return torch.from_numpy(np.array(value))  # a contiguous copy
            except TypeError:
                raise TypeError(
                    f"{name} must be a torch.Tensor or a NumPy array of numbers or bools, "
                    f"got an array of dtype {value.dtype}"
                ) from None
    raise TypeError(f"{name} must be a torch.Tensor or NumPy array, got {type(value).__name__}")


def _check_labels(labels: torch.Tensor, count: int, what: str, num_classes: int | None) -> None:
    """Raise unless ``labels`` is 1-D, integer, ``count`` long and in ``[0, num_classes)``."""
    if (
        labels.ndim != 1
        or labels.dtype.is_floating_point
        or labels.dtype.is_complex
        or labels.dtype == torch.bool
    ):
        raise ValueError(
            f"labels must be a 1-D integer tensor, got dtype {labels.dtype} "
            f"and shape {tuple(labels.shape)}"
        )
    if len(labels) != count:
        raise ValueError(f"labels has {len(labels)} entries for {count} {what}")
    if num_classes is not None:
        bad = torch.nonzero((labels < 0) | (labels >= num_classes)).flatten()
        if bad.numel():
            index = int(bad[0])
            raise ValueError(
                f"labels must lie in [0, {num_classes}), got {int(labels[index])} at index {index}"
            )


def _index_batches(
    n: int,
    device: torch.device,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None,
    drop_last: bool,
    rank: int,
    world_size: int,
) -> list[torch.Tensor]:
    """One epoch's index batches for ``n`` items: see :meth:`CifarDataset.index_batches`."""
    batch_size = positive_int("batch_size", batch_size)
    world_size = positive_int("world_size", world_size)
    rank = int_in_range("rank", rank, 0, world_size)
    if generator is not None and (
        not isinstance(generator, torch.Generator) or generator.device.type != "cpu"
    ):
        raise TypeError(f"generator must be a CPU torch.Generator or None, got {generator!r}")
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
    return list(torch.split(mine.to(device), batch_size))


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
        if num_classes is not None:
            num_classes = positive_int("num_classes", num_classes)
        _check_labels(labels, len(images), "images", num_classes)
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
        return _index_batches(
            len(self), self.device, batch_size, shuffle, generator, drop_last, rank, world_size
        )

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


class TensorDataset:
    """Your own inputs and integer labels, held as tensors on a device and served as mini-batches.

    The in-memory counterpart of :class:`CifarDataset` for any data: it has
    the same methods, with the same shuffling and sharding (the trainer in
    :mod:`dynamicblocks.train` and :func:`split` take either), but serves the
    inputs as they are: no normalisation, no change of dtype. There is no
    built-in augmentation; pass ``transform`` for one.

    Args:
        inputs: tensor or NumPy array of shape ``(N, ...)``, any dtype.
        labels: integer tensor or array of shape ``(N,)``; stored as int64.
        num_classes: if given, every label must lie in ``[0, num_classes)``.
        device: where the inputs and labels live (default: where ``inputs``
            is; CPU for NumPy input). They are copied there once.
        transform: optional augmentation, called as
            ``transform(inputs, generator)`` on each batch of inputs (on
            :attr:`device`) by :meth:`batches` with ``augment=True``; it
            returns the new batch, with as many items. ``generator`` is the
            CPU generator given to :meth:`batches` (None: torch's global
            one): draw from it, e.g.
            ``torch.rand(len(inputs), generator=generator).to(inputs.device)``,
            for epochs that a seed reproduces. Kept by :meth:`subset`,
            :meth:`to` and :func:`split`.

    Raises:
        TypeError: if ``inputs`` or ``labels`` is neither a tensor nor an
            array of numbers, or ``transform`` is not callable.
        ValueError: if ``inputs`` has no batch dimension, ``labels`` is not
            1-D and integer, their counts differ, a label is out of range
            or ``num_classes`` is not a positive int.
    """

    def __init__(
        self,
        inputs: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        num_classes: int | None = None,
        device: torch.device | str | None = None,
        transform: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
    ) -> None:
        inputs, labels = _as_tensor("inputs", inputs), _as_tensor("labels", labels)
        if inputs.ndim == 0:
            raise ValueError("inputs must have shape (N, ...), got a 0-dimensional tensor")
        if num_classes is not None:
            num_classes = positive_int("num_classes", num_classes)
        _check_labels(labels, len(inputs), "inputs", num_classes)
        if transform is not None and not callable(transform):
            raise TypeError(
                f"transform must be a callable (inputs, generator) -> inputs or None, "
                f"got {type(transform).__name__}"
            )
        device = inputs.device if device is None else torch.device(device)
        self.inputs = inputs.detach().to(device)
        self.labels = labels.detach().to(device=device, dtype=torch.int64)
        self.num_classes = num_classes
        self.transform = transform

    @property
    def device(self) -> torch.device:
        """The device holding the inputs and labels."""
        return self.inputs.device

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(inputs={tuple(self.inputs.shape)}, "
            f"dtype={self.inputs.dtype}, num_classes={self.num_classes}, device={self.device})"
        )

    def subset(self, indices: Sequence[int] | torch.Tensor) -> TensorDataset:
        """A new dataset holding the items at ``indices`` (copied, same device and transform)."""
        indices = torch.as_tensor(indices, dtype=torch.int64).to(self.device)
        return TensorDataset(
            self.inputs[indices],
            self.labels[indices],
            num_classes=self.num_classes,
            transform=self.transform,
        )

    def to(self, device: torch.device | str) -> TensorDataset:
        """This dataset moved to ``device`` (``self`` if already there)."""
        if torch.device(device) == self.device:
            return self
        return TensorDataset(self.inputs, self.labels, self.num_classes, device, self.transform)

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
        """The indices of one epoch's mini-batches for this rank, on :attr:`device`.

        Exactly as :meth:`CifarDataset.index_batches`: the same arguments
        give the same indices for a dataset of the same length.

        Raises:
            ValueError: naming ``batch_size``, ``rank`` or ``world_size``.
            TypeError: if ``generator`` is not a CPU ``torch.Generator``.
        """
        return _index_batches(
            len(self), self.device, batch_size, shuffle, generator, drop_last, rank, world_size
        )

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        augment: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of ``(inputs, labels)`` mini-batches, int64 labels, on :attr:`device`.

        The order (and sharding) is that of :meth:`index_batches`, called
        first with the same arguments; the arguments are checked when this
        is called. With ``augment`` each batch of inputs then goes through
        ``transform(inputs, generator)`` as the iterator reaches it, so its
        draws from ``generator`` follow the permutation's, batch by batch.

        Raises:
            ValueError: if ``augment`` is true and the dataset has no
                ``transform``, or as :meth:`index_batches`.
            TypeError: as :meth:`index_batches`.
        """
        if augment and self.transform is None:
            raise ValueError(
                "augment=True needs a transform: a TensorDataset has no augmentation of its "
                "own; pass transform=... when building it, or augment=False (for the "
                "trainer: TrainConfig(augment=False))"
            )
        groups = self.index_batches(
            batch_size,
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        return self._serve(groups, generator, self.transform if augment else None)

    def _serve(
        self,
        groups: list[torch.Tensor],
        generator: torch.Generator | None,
        transform: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for indices in groups:
            inputs = self.inputs[indices]
            if transform is not None:
                inputs = transform(inputs, generator)
                if not isinstance(inputs, torch.Tensor) or len(inputs) != len(indices):
                    got = (
                        f"shape {tuple(inputs.shape)}"
                        if isinstance(inputs, torch.Tensor)
                        else type(inputs).__name__
                    )
                    raise ValueError(
                        f"transform must return a tensor of {len(indices)} inputs, got {got}"
                    )
            yield inputs, self.labels[indices]


def split(
    dataset: CifarDataset | TensorDataset, num_val: int, seed: int = 0
) -> tuple[CifarDataset, CifarDataset] | tuple[TensorDataset, TensorDataset]:
    """Split ``dataset`` at random into ``(train, val)`` with ``num_val`` validation items.

    The split depends only on ``seed`` and ``len(dataset)``; both parts keep
    the original order and the dataset's kind and settings. The
    DynamicBlocks experiments used ``split(cifar_train, 10_000)``: 40k
    training and 10k validation images.

    Raises:
        TypeError: if ``dataset`` is not a :class:`CifarDataset` or
            :class:`TensorDataset`.
        ValueError: if ``num_val`` is not an int in ``[0, len(dataset))`` or
            ``seed`` is not a non-negative int.
    """
    if not isinstance(dataset, (CifarDataset, TensorDataset)):
        raise TypeError(
            f"dataset must be a CifarDataset or TensorDataset, got {type(dataset).__name__}"
        )
    n = len(dataset)
    kind = "images" if isinstance(dataset, CifarDataset) else "items"
    num_val = int_in_range(f"num_val (for a dataset of {n} {kind})", num_val, 0, n)
    seed = int_in_range("seed", seed, 0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:num_val].sort().values, order[num_val:].sort().values
    return dataset.subset(train), dataset.subset(val)  # type: ignore[return-value]
