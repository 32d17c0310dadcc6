"""Reading one CIFAR batch file: a bounded unpickler, then checks of every key."""

from __future__ import annotations

import itertools
import math
import os
import pickle
import reprlib
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple, NoReturn, cast

import numpy as np

__all__ = ["read_split"]


class Spec(NamedTuple):
    """What a dataset's files hold: its archive, folder, batch files and labels."""

    title: str
    archive: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int


_IMAGE_SHAPE = (3, 32, 32)
_PIXELS = 3 * 32 * 32

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


def _read_labels(value: object, count: int, path: Path, spec: Spec) -> np.ndarray:
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


def _read_batch(path: Path, spec: Spec) -> tuple[np.ndarray, np.ndarray]:
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


def read_split(folder: Path, files: tuple[str, ...], spec: Spec) -> tuple[np.ndarray, ...]:
    parts = [_read_batch(folder / f, spec) for f in files]
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    labels = np.concatenate([p[1] for p in parts])
    return images, labels
