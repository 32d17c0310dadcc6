"""Tests for dynamicblocks.data: CIFAR loading, validation, batching and augmentation.

Every archive here is a tiny one written in tmp_path in the official format;
nothing touches the network (the downloader is replaced where it matters).
"""

from __future__ import annotations

import codecs
import collections
import hashlib
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cifar_archive import LAYOUT, PER_BATCH, make_batches, write_folder

from dynamicblocks import data
from dynamicblocks.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CifarDataset,
    CifarNotFoundError,
    TensorDataset,
    crop_flip,
    load_cifar,
    split,
)


def tar_bytes(members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, content in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for member in symlinks:
            info = tarfile.TarInfo(member)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buffer.getvalue()


def archive_bytes(name: str, batches: dict[str, dict]) -> bytes:
    folder = LAYOUT[name][0]
    return tar_bytes({f"{folder}/{f}": pickle.dumps(b, protocol=2) for f, b in batches.items()})


def check_split(images, labels, batches, files, label_key):
    assert images.dtype == np.uint8 and images.shape == (PER_BATCH * len(files), 3, 32, 32)
    assert labels.dtype == np.int64 and labels.shape == (PER_BATCH * len(files),)
    for k, file in enumerate(files):
        batch = batches[file]
        for i in range(PER_BATCH):
            expected = batch[b"data"][i].reshape(3, 32, 32)
            np.testing.assert_array_equal(images[k * PER_BATCH + i], expected)
        np.testing.assert_array_equal(
            labels[k * PER_BATCH : (k + 1) * PER_BATCH], batch[label_key.encode()]
        )


def check_loaded(arrays, name, batches):
    _, _, label_key, num_classes = LAYOUT[name]
    assert arrays.name == name and arrays.num_classes == num_classes
    files = list(batches)
    check_split(arrays.train_images, arrays.train_labels, batches, files[:-1], label_key)
    check_split(arrays.test_images, arrays.test_labels, batches, files[-1:], label_key)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def offline(url, destination):
        raise OSError(f"network disabled in tests: {url}")

    monkeypatch.setattr(data.cifar, "_download", offline)


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_load_from_extracted_folder(tmp_path, name):
    batches = make_batches(name)
    write_folder(tmp_path, name, batches)
    check_loaded(load_cifar(name, tmp_path, download=False), name, batches)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_load_from_tar_gz_extracts_into_root(tmp_path, name):
    batches = make_batches(name, seed=1)
    folder, archive, _, _ = LAYOUT[name]
    (tmp_path / archive).write_bytes(archive_bytes(name, batches))
    check_loaded(load_cifar(name, str(tmp_path), download=False), name, batches)
    assert sorted(p.name for p in (tmp_path / folder).iterdir()) == sorted(batches)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder, archive])  # no staging
    check_loaded(load_cifar(name.upper(), tmp_path, download=False), name, batches)


def test_str_keys_numpy_labels_protocol5_and_uneven_subsets_load(tmp_path):
    batches = make_batches("cifar10")
    sizes = [3, 20, 1, 7, 11, 5]
    for (file, batch), size in zip(batches.items(), sizes):
        labels = np.asarray(batch[b"labels"][:size], dtype=np.int32)
        batches[file] = {"data": batch[b"data"][:size], "labels": labels}
    write_folder(tmp_path, "cifar10", batches, protocol=5)
    arrays = load_cifar("cifar10", tmp_path, download=False)
    assert arrays.train_images.shape == (42, 3, 32, 32) and arrays.test_images.shape[0] == 5
    assert arrays.train_labels.dtype == np.int64
    np.testing.assert_array_equal(
        arrays.train_images[3:23], batches["data_batch_2"]["data"].reshape(-1, 3, 32, 32)
    )


def test_pickles_naming_numpy_core_as_in_the_official_files_load(tmp_path):
    # the official batches were written by NumPy 1.x and name numpy.core.multiarray
    batches = make_batches("cifar10")
    folder = write_folder(tmp_path, "cifar10", batches)
    for path in folder.iterdir():
        legacy = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray\n_reconstruct" in legacy
        path.write_bytes(legacy)
    check_loaded(load_cifar("cifar10", tmp_path, download=False), "cifar10", batches)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_python2_pickles_as_the_official_files_load(tmp_path, name):
    # Python 2 str for every key, label key, dtype code and the pixel bytes; dtype('u1', 0, 1)
    batches = make_batches(name, seed=4)
    folder = write_folder(tmp_path, name, batches, protocol="python2")
    payload = next(folder.iterdir()).read_bytes()
    assert pickle.SHORT_BINSTRING + b"\x04data" in payload and b"_codecs" not in payload
    check_loaded(load_cifar(name, tmp_path, download=False), name, batches)


@pytest.mark.parametrize("protocol", [2, 5, "python2"])
def test_label_lists_of_numpy_ints_load(tmp_path, protocol):
    batches = make_batches("cifar10")
    for batch in batches.values():
        batch[b"labels"] = [np.int16(v) for v in batch[b"labels"][:10]] + [
            np.uint8(v) for v in batch[b"labels"][10:]
        ]
    write_folder(tmp_path, "cifar10", batches, protocol=protocol)
    check_loaded(load_cifar("cifar10", tmp_path, download=False), "cifar10", batches)


def test_batch_with_no_images_loads(tmp_path):
    batches = make_batches("cifar100")
    batches["test"] = {b"data": np.zeros((0, 3072), np.uint8), b"fine_labels": []}
    write_folder(tmp_path, "cifar100", batches)
    arrays = load_cifar("cifar100", tmp_path, download=False)
    assert arrays.test_images.shape == (0, 3, 32, 32) and arrays.test_labels.dtype == np.int64


def test_root_that_is_a_file(tmp_path):
    root = tmp_path / "file"
    root.write_text("")
    with pytest.raises(NotADirectoryError, match=f"root must be a directory, got the file {root}"):
        load_cifar("cifar10", root)


def test_unknown_or_non_string_name(tmp_path):
    with pytest.raises(ValueError, match=r"name must be one of 'cifar10', 'cifar100'.*'mnist'"):
        load_cifar("mnist", tmp_path)
    with pytest.raises(TypeError, match="name must be a string"):
        load_cifar(10, tmp_path)
    with pytest.raises(TypeError, match="download must be a bool"):
        load_cifar("cifar10", tmp_path, download="yes")


# --------------------------------------------------------------------------- missing data, download


@pytest.mark.parametrize("download", [False, True])
def test_missing_data_says_what_to_put_where(tmp_path, download):
    root = tmp_path / "data"
    with pytest.raises(CifarNotFoundError) as info:
        load_cifar("cifar10", root, download=download)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    for part in [str(root), "cifar-10-python.tar.gz", "cifar-10-batches-py/", "test_batch"]:
        assert part in message
    assert "data_batch_1" in message and "data_batch_5" in message
    assert ("download=True" in message) != download
    assert ("network disabled" in message) == download
    assert not root.exists() or list(root.iterdir()) == []  # no partial download left


def test_incomplete_folder_names_the_missing_files(tmp_path):
    batches = make_batches("cifar100")
    del batches["test"]
    write_folder(tmp_path, "cifar100", batches)
    with pytest.raises(CifarNotFoundError, match=r"cifar-100-python exists but lacks test"):
        load_cifar("cifar100", tmp_path, download=False)


def test_download_with_wrong_md5_raises_and_leaves_nothing(tmp_path, monkeypatch):
    def wrong(url, destination):
        Path(destination).write_bytes(b"not the archive")

    monkeypatch.setattr(data.cifar, "_download", wrong)
    with pytest.raises(ValueError, match=r"MD5 .*expected c58f30108f718f92721af3b95e74349a"):
        load_cifar("cifar10", tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


def test_download_with_right_md5_is_renamed_and_extracted(tmp_path, monkeypatch):
    batches = make_batches("cifar100", seed=2)
    payload = archive_bytes("cifar100", batches)
    urls = []

    def fetch(url, destination):
        urls.append(url)
        Path(destination).write_bytes(payload)

    monkeypatch.setattr(data.cifar, "_download", fetch)
    monkeypatch.setitem(data.ARCHIVE_MD5, "cifar100", hashlib.md5(payload).hexdigest())
    root = tmp_path / "new" / "dir"
    check_loaded(load_cifar("cifar100", root), "cifar100", batches)
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"]
    assert (root / "cifar-100-python.tar.gz").read_bytes() == payload
    assert sorted(p.name for p in root.iterdir()) == ["cifar-100-python", "cifar-100-python.tar.gz"]
    load_cifar("cifar100", root)  # present now: no second download
    assert len(urls) == 1


# --------------------------------------------------------------------------- bad batch files


def _pickled(batch):
    return pickle.dumps(batch, protocol=2)


def _edit(key, value):
    def apply(batch):
        batch = dict(batch)
        if value is None:
            del batch[key]
        else:
            batch[key] = value
        return _pickled(batch)

    return apply


BAD_BATCHES = {
    "truncated": (lambda b: _pickled(b)[: len(_pickled(b)) // 2], "not a readable CIFAR batch"),
    "empty": (lambda b: b"", "not a readable CIFAR batch"),
    "garbage": (lambda b: b"\x00\x01 this is not a pickle", "not a readable CIFAR batch"),
    "foreign global": (
        lambda b: _pickled(collections.OrderedDict(b)),
        "refusing to load the global collections.OrderedDict",
    ),
    "not a dict": (lambda b: _pickled([b]), "expected a pickled dict"),
    "missing data": (_edit(b"data", None), "missing key 'data'"),
    "missing labels": (_edit(b"labels", None), "missing key 'labels'"),
    "list data": (_edit(b"data", [[0] * 3072] * 20), "must be a uint8 NumPy array"),
    "float data": (_edit(b"data", np.zeros((20, 3072))), "dtype float64"),
    "wrong shape": (_edit(b"data", np.zeros((20, 3, 32, 32), np.uint8)), r"\(N, 3072\)"),
    "short row": (_edit(b"data", np.zeros((20, 3071), np.uint8)), r"got \(20, 3071\)"),
    "label count": (_edit(b"labels", [0] * 19), "19 'labels' for 20 images"),
    "label too big": (_edit(b"labels", [0] * 19 + [10]), r"\[0, 10\), got 10 at index 19"),
    "negative label": (_edit(b"labels", [-1] + [0] * 19), r"got -1 at index 0"),
    "float labels": (_edit(b"labels", [0.5] * 20), "not a sequence of ints: item 0 is a float"),
    "ragged labels": (_edit(b"labels", [[0, 1]] * 19 + [[0]]), "item 0 is a list"),
    "bool labels": (_edit(b"labels", [0] * 19 + [True]), "item 19 is a bool"),
    "huge label": (_edit(b"labels", [0] * 19 + [2**70]), r"\[0, 10\), got an int beyond int64"),
    "dict labels": (_edit(b"labels", dict.fromkeys(range(20), 0)), "list of ints .* got dict"),
    "2-D label array": (
        _edit(b"labels", np.zeros((20, 1), np.int64)),
        r"1-D sequence of ints, got shape \(20, 1\)",
    ),
    "float label array": (_edit(b"labels", np.zeros(20)), "dtype float64"),
    "tuple key": (_edit((1, 2), 0), "refusing a dict key of type tuple"),
    "set": (lambda b: pickle.dumps(dict(b, x={1, 2}), 4), "the pickle instruction EMPTY_SET"),
    "object array": (
        _edit(b"data", np.array([None] * 20, dtype=object)),
        "refusing the dtype 'O8'",
    ),
    "structured array": (
        _edit(b"data", np.zeros(20, "u1,u1")),
        "refusing the dtype",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_bad_batch_file_raises_value_error_naming_the_file(tmp_path, case):
    corrupt, expected = BAD_BATCHES[case]
    batches = make_batches("cifar10")
    folder = write_folder(tmp_path, "cifar10", batches)
    bad = folder / "data_batch_3"
    bad.write_bytes(corrupt(batches["data_batch_3"]))
    with pytest.raises(ValueError, match=re.escape(str(bad))) as info:
        load_cifar("cifar10", tmp_path, download=False)
    assert re.search(expected, str(info.value)), str(info.value)


def test_cifar100_label_range_is_100(tmp_path):
    batches = make_batches("cifar100")
    batches["test"][b"fine_labels"][5] = 100
    folder = write_folder(tmp_path, "cifar100", batches)
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'test'}: 'fine_labels'")):
        load_cifar("cifar100", tmp_path, download=False)


class Call:
    """Pickles as ``func(*args)``, then ``BUILD`` with ``state``: a crafted call."""

    def __init__(self, func, *args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


_RECONSTRUCT = np.ndarray(0).__reduce__()[0]  # numpy.(_)core.multiarray._reconstruct
_SCALAR = np.int64(0).__reduce__()[0]  # numpy.(_)core.multiarray.scalar
_DATA = np.zeros((PER_BATCH, 3072), np.uint8)


def _nested_tuple_key(depth: int) -> bytes:
    """A dict whose key is a tuple of two references to one tuple, nested ``depth`` deep.

    A 2**depth-leaf tree in a few hundred bytes; hashing it (to insert the
    key) visits every leaf.
    """
    nested = (1, 1)
    for _ in range(depth):
        nested = (nested, nested)
    body = pickle.dumps(nested, protocol=2)[2:-1]  # without PROTO and STOP
    return b"\x80\x02}" + body + b"K\x00s."


def _hex_chain(depth: int) -> Call:
    text = Call(codecs.encode, "ab", "latin1")
    for _ in range(depth):
        text = Call(codecs.encode, text, "hex")  # doubles the size each time
    return text


# Small files that describe huge objects: each would take gigabytes (or, for the
# tuple key, 2**60 steps) if the reader built what they describe. Each value:
# (payload, what the error must say: a refusal of the construct, not a MemoryError).
BOMBS = {
    # the reported one: one label row repeated by reference; np.asarray expands it
    "repeated label row": (
        lambda: pickle.dumps({b"data": _DATA, b"labels": [list(range(10)) * 100] * 100_000}, 2),
        "100000 'labels' for 20 images",
    ),
    # ... as many rows as images, each a 10**9-item tree of shared lists
    "nested label rows": (
        lambda: pickle.dumps({b"data": _DATA, b"labels": [_nested_list(9)] * PER_BATCH}, 2),
        "not a sequence of ints: item 0 is a list",
    ),
    "array from _reconstruct alone": (
        lambda: pickle.dumps(
            {
                b"data": Call(_RECONSTRUCT, np.ndarray, (10**6, 3072), b"B"),
                b"labels": Call(_RECONSTRUCT, np.ndarray, (10**6,), b"l"),
            },
            2,
        ),
        r"refusing a _reconstruct call other than _reconstruct\(numpy.ndarray, \(0,\)",
    ),
    "ndarray called": (
        lambda: pickle.dumps({b"data": Call(np.ndarray, (10**6, 3072), np.dtype("u1"))}, 2),
        "refusing to call numpy.ndarray",
    ),
    "state larger than its bytes": (
        lambda: pickle.dumps(
            {
                b"data": Call(
                    _RECONSTRUCT,
                    np.ndarray,
                    (0,),
                    b"b",
                    state=(1, (10**6, 3072), np.dtype("u1"), False, b"\x00"),
                )
            },
            2,
        ),
        r"refusing an array of shape \(1000000, 3072\) and dtype uint8 from 1 bytes",
    ),
    "object array state": (
        lambda: pickle.dumps(
            {
                b"data": Call(
                    _RECONSTRUCT,
                    np.ndarray,
                    (0,),
                    b"b",
                    state=(1, (10**9,), np.dtype(object), False, []),
                )
            },
            2,
        ),
        "refusing the dtype 'O8'",
    ),
    "bytes(n)": (
        lambda: pickle.dumps({b"x": Call(bytes, 10**10)}, 2),
        r"bytes\(\) call with arguments",
    ),
    "codec chain": (lambda: pickle.dumps({b"x": _hex_chain(40)}, 2), "encode of a bytes to 'hex'"),
    "scalar of a huge dtype": (
        lambda: pickle.dumps({b"x": Call(_SCALAR, np.dtype("V2000000000"))}, 2),
        "refusing the dtype 'V2000000000'",
    ),
    "tuple key hashed 2**60 times": (lambda: _nested_tuple_key(60), "dict key of type tuple"),
    "bytearray longer than the file": (
        lambda: b"\x80\x05\x96" + (1 << 40).to_bytes(8, "little") + b".",
        "a length of 1099511627776 bytes runs past the end of the file",
    ),
    "memo index 2**31": (
        lambda: b"\x80\x02K\x00r" + (1 << 31).to_bytes(4, "little") + b"0}.",
        "missing key 'data'",
    ),
}


def _nested_list(depth: int) -> list:
    nested = [1] * 10
    for _ in range(depth - 1):
        nested = [nested] * 10
    return nested


_BOMB_CHILD = """
import json, resource, sys
from pathlib import Path
from dynamicblocks.data import load_cifar

with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
limit = size + (512 << 20)  # what is mapped now (torch and all) + 512 MiB
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
resource.setrlimit(resource.RLIMIT_CPU, (120, hard))  # a hang kills the child: the test fails
results = {}
for case, root in json.loads(sys.argv[1]).items():
    try:
        load_cifar("cifar10", root, download=False)
        results[case] = "loaded"
    except BaseException as error:
        results[case] = f"{type(error).__name__}: {error}"
print(json.dumps(results))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc are Linux's")
def test_small_files_describing_huge_objects_fail_fast_in_bounded_memory(tmp_path):
    roots = {}
    for k, (payload, _) in enumerate(BOMBS.values()):
        roots[k] = tmp_path / str(k)
        folder = write_folder(roots[k], "cifar10", make_batches("cifar10"))
        bomb = payload()
        assert len(bomb) < 300_000  # small on disk
        (folder / "data_batch_3").write_bytes(bomb)
    repo = Path(__file__).resolve().parents[1]
    paths = [str(repo), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    cases = {case: str(roots[k]) for k, case in enumerate(BOMBS)}
    child = subprocess.run(
        [sys.executable, "-c", _BOMB_CHILD, json.dumps(cases)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    results = json.loads(child.stdout.splitlines()[-1])
    for case, (_, expected) in BOMBS.items():
        message = results[case]
        bad = Path(cases[case]) / "cifar-10-batches-py" / "data_batch_3"
        assert message.startswith(f"ValueError: {bad}: "), (case, message)
        assert re.search(expected, message), (case, message)


def test_a_dtype_state_never_changes_numpys_shared_dtype(tmp_path):
    # dtype("i8", False, False) is NumPy's own int64 descriptor; a BUILD on it would
    # make int64 big-endian for the whole process
    batches = make_batches("cifar10")
    batches["data_batch_2"][b"x"] = Call(
        np.dtype, "i8", False, False, state=(3, ">", None, None, None, -1, -1, 0)
    )
    write_folder(tmp_path, "cifar10", batches)
    load_cifar("cifar10", tmp_path, download=False)
    assert np.dtype("i8").byteorder == "=" and np.arange(3).tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "state, expected",
    [
        ((3, "|", None, None, None, 9, -1, 0), "refusing this state for the dtype uint8"),
        ((3, "|", None, ("a",), None, -1, -1, 0), "refusing this state"),
        ((3, "|", None, None, None, -1, -1, 63), "refusing this state"),
    ],
)
def test_dtype_states_that_would_change_more_than_byte_order_are_refused(tmp_path, state, expected):
    batches = make_batches("cifar10")
    data = batches["test_batch"][b"data"]
    batches["test_batch"][b"data"] = Call(
        _RECONSTRUCT,
        np.ndarray,
        (0,),
        b"b",
        state=(
            1,
            data.shape,
            Call(np.dtype, "u1", False, True, state=state),
            False,
            data.tobytes(),
        ),
    )
    folder = write_folder(tmp_path, "cifar10", batches)
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'test_batch'}: ")) as info:
        load_cifar("cifar10", tmp_path, download=False)
    assert expected in str(info.value)


# --------------------------------------------------------------------------- archives


@pytest.mark.parametrize(
    "member, symlink",
    [
        ("../evil", False),
        ("cifar-10-batches-py/../../evil", False),
        ("/tmp/evil", False),
        ("cifar-10-batches-py/link", True),
    ],
)
def test_unsafe_tar_member_is_rejected_before_writing(tmp_path, member, symlink):
    root = tmp_path / "root"
    root.mkdir()
    members = {f"cifar-10-batches-py/{f}": _pickled(b) for f, b in make_batches("cifar10").items()}
    if not symlink:
        members[member] = b"payload"
    archive = root / "cifar-10-python.tar.gz"
    archive.write_bytes(tar_bytes(members, symlinks=(member,) if symlink else ()))
    with pytest.raises(ValueError, match=rf"unsafe member '{re.escape(member)}'.*{archive.name}"):
        load_cifar("cifar10", root, download=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cifar-10-python.tar.gz", "root"]


def test_unreadable_or_incomplete_archive_is_named(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match=rf"could not read archive {re.escape(str(archive))}"):
        load_cifar("cifar10", tmp_path, download=False)
    batches = make_batches("cifar10")
    del batches["data_batch_4"]
    archive.write_bytes(archive_bytes("cifar10", batches))
    with pytest.raises(ValueError, match=r"lacks cifar-10-batches-py/data_batch_4"):
        load_cifar("cifar10", tmp_path, download=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz"]


def test_extraction_fills_in_only_the_missing_files(tmp_path):
    # the user's own (here: different) batches and meta file stay; test_batch comes in
    mine = make_batches("cifar10", seed=5)
    del mine["test_batch"]
    folder = write_folder(tmp_path, "cifar10", mine)
    (folder / "batches.meta").write_bytes(b"my own meta")
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    official = make_batches("cifar10", seed=6)
    members = {f"cifar-10-batches-py/{f}": _pickled(b) for f, b in official.items()}
    members["cifar-10-batches-py/batches.meta"] = b"official meta"
    members["cifar-10-batches-py/readme.html"] = b"<html/>"
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(tar_bytes(members))
    arrays = load_cifar("cifar10", tmp_path, download=False)
    check_loaded(arrays, "cifar10", {**mine, "test_batch": official["test_batch"]})
    for name, content in before.items():
        assert (folder / name).read_bytes() == content, name
    assert (folder / "test_batch").read_bytes() == members["cifar-10-batches-py/test_batch"]
    assert (folder / "readme.html").read_bytes() == b"<html/>"  # missing, so taken too
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
    ]


def test_extraction_does_not_replace_what_blocks_a_batch_name(tmp_path):
    batches = make_batches("cifar10")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive_bytes("cifar10", batches))
    blocker = tmp_path / "cifar-10-batches-py" / "test_batch"
    blocker.mkdir(parents=True)
    (blocker / "keep").write_text("mine")
    with pytest.raises(CifarNotFoundError, match=f"{re.escape(str(blocker))} exists but is not"):
        load_cifar("cifar10", tmp_path, download=False)
    assert (blocker / "keep").read_text() == "mine"
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_1").is_file()


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def test_leftovers_of_a_killed_extraction_or_download_are_removed(tmp_path):
    write_folder(tmp_path, "cifar10", make_batches("cifar10"))
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    entries = {  # name: (is a directory, removed)
        ".cifar-10-batches-py.a1b_c9zz.part": (True, True),  # a killed extraction
        ".cifar-10-python.tar.gz.q2w3e4r5.part": (False, True),  # a killed download
        ".cifar-10-batches-py.original": (True, False),  # not a name we make
        ".cifar-10-batches-py.abcdefgh": (True, False),  # no .part: the user's
        ".cifar-10-batches-py.abcdefghi.part": (True, False),  # 9 random characters
        ".cifar-10-batches-py.ABCDEFGH.part": (True, False),  # tempfile uses lower case
        ".cifar-10-batches-py.zzzzzzzz.part": (False, False),  # a file, where we make a dir
        ".cifar-10-python.tar.gz.zzzzzzzz.part": (True, False),  # a dir, where we make a file
        ".cifar-100-python.a1b2c3d4.part": (True, False),  # the other dataset's
        "cifar-10-batches-py.a1b2c3d4.part": (True, False),  # not hidden
    }
    for name, (is_dir, _) in entries.items():
        path = tmp_path / name
        if is_dir:
            (path / "cifar-10-batches-py").mkdir(parents=True)
            (path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"partial")
        else:
            path.write_bytes(b"partial")
        _age(path, 2 * 3600)
    fresh = tmp_path / ".cifar-10-python.tar.gz.n0wn0w00.part"  # another process at work
    fresh.write_bytes(b"downloading")
    link = tmp_path / ".cifar-10-batches-py.l1nk1234.part"
    link.symlink_to(outside, target_is_directory=True)
    _age(link, 2 * 3600)
    load_cifar("cifar10", tmp_path, download=False)
    for name, (_, removed) in entries.items():
        assert (tmp_path / name).exists() != removed, name
    assert fresh.exists() and link.is_symlink() and (outside / "keep").read_text() == "x"


def test_the_names_of_partial_work_are_the_ones_tidied_up(tmp_path, monkeypatch):
    # the staging directory and partial download this module makes match its patterns
    made = []
    for function in ("mkdtemp", "mkstemp"):
        real = getattr(tempfile, function)

        def record(*args, real=real, **kwargs):
            made.append(real(*args, **kwargs))
            return made[-1]

        monkeypatch.setattr(data.cifar.tempfile, function, record)
    batches = make_batches("cifar10")
    payload = archive_bytes("cifar10", batches)
    monkeypatch.setattr(data.cifar, "_download", lambda url, path: Path(path).write_bytes(payload))
    monkeypatch.setitem(data.ARCHIVE_MD5, "cifar10", hashlib.md5(payload).hexdigest())
    load_cifar("cifar10", tmp_path)
    download, staging = made[0][1], made[1]  # mkstemp gives (handle, name)
    spec = data.cifar._SPECS["cifar10"]
    assert data.cifar._leftover_pattern(spec.archive).fullmatch(Path(download).name)
    assert data.cifar._leftover_pattern(spec.folder).fullmatch(Path(staging).name)
    assert Path(download).parent == Path(staging).parent == tmp_path


# --------------------------------------------------------------------------- dataset, batches


def make_dataset(n: int = 40, seed: int = 0, **kwargs) -> CifarDataset:
    """Random images whose label is their index, so batches reveal which images they hold."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    return CifarDataset(images, np.arange(n), **kwargs)


def test_dataset_holds_one_uint8_tensor():
    arrays_images = np.random.default_rng(0).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    dataset = CifarDataset(arrays_images, np.array([0, 1, 2, 3, 4, 9]), num_classes=10)
    assert len(dataset) == 6 and dataset.device == torch.device("cpu")
    assert dataset.images.dtype == torch.uint8 and dataset.images.is_contiguous()
    assert dataset.labels.dtype == torch.int64
    assert dataset.mean == CIFAR10_MEAN and dataset.std == CIFAR10_STD
    assert dataset.to("cpu") is dataset
    assert "images=(6, 3, 32, 32)" in repr(dataset)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(images=np.zeros((4, 3, 32, 32))), ValueError, "images must be a uint8 tensor"),
        (dict(images=np.zeros((4, 3072), np.uint8)), ValueError, r"shape \(4, 3072\)"),
        (dict(images=[[0]]), TypeError, "images must be a torch.Tensor or NumPy array"),
        (dict(labels=np.arange(3)), ValueError, "labels has 3 entries for 4 images"),
        (dict(labels=np.zeros(4)), ValueError, "labels must be a 1-D integer tensor"),
        (dict(labels=np.array([0, 1, 2, 10])), ValueError, r"\[0, 10\), got 10 at index 3"),
        (dict(num_classes=0), ValueError, "num_classes must be a positive int"),
        (dict(mean=(0.5, 0.5)), ValueError, "mean must hold 3 finite floats"),
        (dict(std=(0.5, 0.0, 0.5)), ValueError, "std must be positive"),
        (dict(std="abc"), TypeError, "std must be a sequence of 3 floats"),
    ],
)
def test_dataset_rejects_bad_arguments(kwargs, error, match):
    arguments = dict(images=np.zeros((4, 3, 32, 32), np.uint8), labels=np.arange(4), num_classes=10)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        CifarDataset(**arguments)


def test_batches_cover_every_index_once_per_epoch():
    dataset = make_dataset(45)
    generator = torch.Generator().manual_seed(3)
    epochs = []
    for _ in range(2):
        batches = list(dataset.batches(8, generator=generator))
        assert [len(labels) for _, labels in batches] == [8] * 5 + [5]
        order = torch.cat([labels for _, labels in batches])
        assert sorted(order.tolist()) == list(range(45))
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled each epoch
    assert torch.equal(epochs[0], torch.randperm(45, generator=torch.Generator().manual_seed(3)))
    kept = list(dataset.batches(8, shuffle=False, drop_last=True))
    assert torch.equal(torch.cat([labels for _, labels in kept]), torch.arange(40))
    groups = dataset.index_batches(8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.cat(groups), epochs[0])


@pytest.mark.parametrize("n, drop_last", [(40, False), (40, True), (41, False), (41, True)])
def test_sharding_gives_disjoint_slices_and_equal_batch_counts(n, drop_last):
    dataset = make_dataset(n)
    shards = []
    for rank in range(2):
        generator = torch.Generator().manual_seed(7)
        shards.append(
            [
                labels
                for _, labels in dataset.batches(
                    6, generator=generator, drop_last=drop_last, rank=rank, world_size=2
                )
            ]
        )
    assert len(shards[0]) == len(shards[1])
    seen = [torch.cat(batches).tolist() for batches in shards]
    assert len(seen[0]) == len(seen[1])
    if drop_last:
        assert not set(seen[0]) & set(seen[1])
        assert len(seen[0]) == n // 2 - (n // 2) % 6
    else:
        assert set(seen[0]) | set(seen[1]) == set(range(n))
        assert len(seen[0]) + len(seen[1]) == n + n % 2  # at most one repeat, as padding
        if n % 2 == 0:
            assert not set(seen[0]) & set(seen[1])


def test_more_ranks_than_images_still_balanced():
    dataset = make_dataset(3)
    counts = [
        [len(g) for g in dataset.index_batches(2, rank=r, world_size=8, generator=None)]
        for r in range(8)
    ]
    assert counts == [[1]] * 8


def test_normalisation_matches_hand_computation():
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    dataset = make_dataset(10, mean=mean, std=std)
    images, labels = next(dataset.batches(10, shuffle=False))
    assert images.dtype == torch.float32 and images.shape == (10, 3, 32, 32)
    raw = dataset.images.double() / 255
    expected = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(images.double(), expected, rtol=0, atol=1e-5)
    default = next(make_dataset(10).batches(10, shuffle=False))[0]
    pixel = dataset.images[4, 2, 7, 9].item()
    assert default[4, 2, 7, 9].item() == pytest.approx((pixel / 255 - 0.4465) / 0.2616, abs=1e-5)


def test_augmented_batches_shape_dtype_and_determinism():
    dataset = make_dataset(30)

    def epoch(seed):
        generator = torch.Generator().manual_seed(seed)
        return list(dataset.batches(8, generator=generator, augment=True))

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert [x.shape for x, _ in first] == [(8, 3, 32, 32)] * 3 + [(6, 3, 32, 32)]
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in first)
    for (x, y), (x2, y2) in zip(first, again):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(torch.cat([x for x, _ in first]), torch.cat([x for x, _ in other]))
    # same order, different augmentation: the draws come after the permutation
    generator = torch.Generator().manual_seed(0)
    plain = list(dataset.batches(8, generator=generator))
    assert all(torch.equal(y, y2) for (_, y), (_, y2) in zip(first, plain))
    assert not all(torch.equal(x, x2) for (x, _), (x2, _) in zip(first, plain))


def test_every_augmented_image_is_a_crop_or_flip_of_its_padded_original():
    dataset = make_dataset(48, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    generator = torch.Generator().manual_seed(5)
    found = collections.Counter()
    for images, labels in dataset.batches(16, generator=generator, augment=True):
        pixels = (images * 255).round().to(torch.uint8)
        for image, index in zip(pixels, labels.tolist()):
            padded = F.pad(dataset.images[index], (4, 4, 4, 4))
            crops = padded.unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 9, 9, 32, 32)
            matches = [
                (dy, dx, flip)
                for flip in (False, True)
                for dy in range(9)
                for dx in range(9)
                if torch.equal(image.flip(-1) if flip else image, crops[:, dy, dx])
            ]
            assert matches, f"image {index} is no crop/flip of its padded original"
            found[matches[0][2]] += 1
            found["moved"] += matches[0][:2] != (4, 4)
    assert found[True] > 5 and found[False] > 5 and found["moved"] > 30


def test_crop_flip_centre_flip_and_corner():
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    centre = torch.full((3, 2), 4)
    none, every = torch.zeros(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool)
    assert torch.equal(crop_flip(images, centre, none), images)
    assert torch.equal(crop_flip(images, centre, every), images.flip(-1))
    corner = crop_flip(images, torch.tensor([[0, 0], [8, 8], [0, 8]]), none)
    assert torch.equal(corner[0, :, 4:, 4:], images[0, :, :28, :28])
    assert torch.equal(corner[1, :, :28, :28], images[1, :, 4:, 4:])
    assert torch.equal(corner[2, :, 4:, :28], images[2, :, :28, 4:])
    assert corner[0, :, :4].eq(0).all() and corner[0, :, :, :4].eq(0).all()
    mixed = crop_flip(images, torch.tensor([[4, 5], [4, 4], [3, 4]]), torch.tensor([1, 0, 1]) > 0)
    assert torch.equal(mixed[0], F.pad(images[0], (4, 4, 4, 4))[:, 4:36, 5:37].flip(-1))
    assert torch.equal(mixed[1], images[1])
    assert torch.equal(mixed[2, :, 1:], images[2, :, :31].flip(-1))
    with pytest.raises(ValueError, match=r"offsets must have shape \(3, 2\)"):
        crop_flip(images, torch.zeros(2, 2, dtype=torch.int64), none)


def test_batches_reject_bad_arguments():
    dataset = make_dataset(10)
    cases = [
        (dict(batch_size=0), ValueError, "batch_size must be a positive int, got 0"),
        (dict(world_size=0), ValueError, "world_size must be a positive int, got 0"),
        (dict(rank=2, world_size=2), ValueError, r"rank must be an int in \[0, 2\), got 2"),
        (dict(rank=-1), ValueError, r"rank must be an int in \[0, 1\), got -1"),
        (dict(padding=-1), ValueError, "padding must be an int >= 0, got -1"),
        (dict(generator=0), TypeError, "generator must be a CPU torch.Generator"),
    ]
    for kwargs, error, match in cases:
        arguments = dict(batch_size=4) | kwargs
        with pytest.raises(error, match=match):
            dataset.batches(**arguments)  # raises on the call, before iteration


# --------------------------------------------------------------------------- split


def test_split_is_deterministic_disjoint_and_sized():
    dataset = make_dataset(50, num_classes=50)
    train, val = split(dataset, 10, seed=3)
    assert (len(train), len(val)) == (40, 10)
    train_ids, val_ids = train.labels.tolist(), val.labels.tolist()
    assert train_ids == sorted(train_ids) and val_ids == sorted(val_ids)
    assert not set(train_ids) & set(val_ids) and set(train_ids) | set(val_ids) == set(range(50))
    for part in (train, val):
        assert torch.equal(part.images, dataset.images[part.labels])
        assert part.num_classes == 50 and part.mean == dataset.mean
    again = split(dataset, 10, seed=3)
    assert torch.equal(again[1].labels, val.labels) and torch.equal(again[0].images, train.images)
    assert not torch.equal(split(dataset, 10, seed=4)[1].labels, val.labels)
    empty_train, empty_val = split(dataset, 0)
    assert len(empty_train) == 50 and len(empty_val) == 0
    assert list(empty_val.batches(4)) == []


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((50,), ValueError, r"num_val \(for a dataset of 50 images\) must be an int in \[0, 50\)"),
        ((-1,), ValueError, r"num_val .* got -1"),
        ((True,), ValueError, r"num_val .* got True"),
        ((2.5,), ValueError, r"num_val .* got 2.5"),
        ((10, -1), ValueError, "seed must be an int >= 0, got -1"),
    ],
)
def test_split_rejects_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        split(make_dataset(50), *args)


def test_split_rejects_non_dataset():
    with pytest.raises(TypeError, match="must be a CifarDataset or TensorDataset, got ndarray"):
        split(np.zeros((5, 3, 32, 32), np.uint8), 1)


def test_loaded_arrays_feed_the_dataset(tmp_path):
    batches = make_batches("cifar100")
    write_folder(tmp_path, "cifar100", batches)
    arrays = load_cifar("cifar100", tmp_path, download=False)
    train = CifarDataset(arrays.train_images, arrays.train_labels, arrays.num_classes)
    images, labels = next(train.batches(PER_BATCH, shuffle=False))
    assert torch.equal(labels, torch.as_tensor(batches["train"][b"fine_labels"]))
    assert torch.equal(
        train.images[3], torch.from_numpy(batches["train"][b"data"][3]).view(3, 32, 32)
    )


# --------------------------------------------------------------------------- TensorDataset


def make_tensor_dataset(n: int = 40, **kwargs) -> TensorDataset:
    """Inputs ``(n, 2, 3)`` whose every entry is the item's index, labels the index too."""
    inputs = torch.arange(n, dtype=torch.float32).view(n, 1, 1).expand(n, 2, 3).clone()
    return TensorDataset(inputs, torch.arange(n), **kwargs)


def _check_pairs(inputs: torch.Tensor, labels: torch.Tensor) -> None:
    assert torch.equal(inputs[:, 0, 0].long(), labels)  # each input travels with its label


def test_tensor_dataset_holds_inputs_as_given():
    inputs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float64)
    inputs.flags.writeable = False
    dataset = TensorDataset(inputs, np.array([0, 1, 2, 0, 1, 2], np.uint8), num_classes=3)
    assert len(dataset) == 6 and dataset.device == torch.device("cpu")
    assert dataset.inputs.dtype == torch.float64 and dataset.labels.dtype == torch.int64
    assert dataset.to("cpu") is dataset and dataset.num_classes == 3
    assert "inputs=(6, 4)" in repr(dataset) and "float64" in repr(dataset)
    images, labels = next(dataset.batches(6, shuffle=False))
    assert torch.equal(images, torch.tensor(inputs)) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    reversed_ = TensorDataset(np.arange(5)[::-1], np.arange(5)[::-1])  # negative strides
    assert reversed_.inputs.tolist() == [4, 3, 2, 1, 0]
    assert reversed_.inputs.dtype == torch.int64  # no conversion to float


def test_tensor_dataset_batches_cover_every_index_once_per_epoch():
    dataset = make_tensor_dataset(45)
    generator = torch.Generator().manual_seed(3)
    epochs = []
    for _ in range(2):
        batches = list(dataset.batches(8, generator=generator))
        assert [len(labels) for _, labels in batches] == [8] * 5 + [5]
        for inputs, labels in batches:
            _check_pairs(inputs, labels)
        order = torch.cat([labels for _, labels in batches])
        assert sorted(order.tolist()) == list(range(45))
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1])
    again = torch.cat(
        [y for _, y in dataset.batches(8, generator=torch.Generator().manual_seed(3))]
    )
    assert torch.equal(again, epochs[0])  # same seed, same epoch
    kept = list(dataset.batches(8, shuffle=False, drop_last=True))
    assert torch.equal(torch.cat([labels for _, labels in kept]), torch.arange(40))


@pytest.mark.parametrize("n, drop_last", [(40, False), (40, True), (43, False), (43, True)])
def test_tensor_dataset_shards_as_cifar_dataset_does(n, drop_last):
    dataset, cifar = make_tensor_dataset(n), make_dataset(n)
    shards = []
    for rank in range(3):
        arguments = dict(generator=None, drop_last=drop_last, rank=rank, world_size=3)
        mine = dataset.index_batches(
            5, **(arguments | {"generator": torch.Generator().manual_seed(9)})
        )
        theirs = cifar.index_batches(
            5, **(arguments | {"generator": torch.Generator().manual_seed(9)})
        )
        assert [g.tolist() for g in mine] == [g.tolist() for g in theirs]
        generator = torch.Generator().manual_seed(9)
        shard = [y for _, y in dataset.batches(5, **(arguments | {"generator": generator}))]
        assert [g.tolist() for g in shard] == [g.tolist() for g in mine]
        shards.append(torch.cat(shard).tolist() if shard else [])
    assert len({len(shard) for shard in shards}) == 1  # every rank as many items
    if drop_last:
        assert sum(map(len, shards)) == len(set().union(*shards))  # disjoint
    else:
        assert set().union(*shards) == set(range(n))


def test_tensor_dataset_subset_and_to():
    def transform(inputs, generator):
        return inputs

    dataset = make_tensor_dataset(10, num_classes=10, transform=transform)
    part = dataset.subset([7, 2, 2])
    assert isinstance(part, TensorDataset) and part.labels.tolist() == [7, 2, 2]
    _check_pairs(part.inputs, part.labels)
    assert part.num_classes == 10 and part.transform is transform
    assert dataset.subset(range(0, 10, 3)).labels.tolist() == [0, 3, 6, 9]
    assert dataset.subset(torch.tensor([], dtype=torch.int64)).inputs.shape == (0, 2, 3)
    meta = make_tensor_dataset(4).to("meta")
    assert meta.device == torch.device("meta") and meta.inputs.is_meta and len(meta) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensor_dataset_on_cuda():
    dataset = make_tensor_dataset(20, num_classes=20).to("cuda")
    assert dataset.inputs.is_cuda and dataset.labels.is_cuda
    inputs, labels = next(dataset.batches(8, generator=torch.Generator().manual_seed(0)))
    assert inputs.is_cuda and labels.is_cuda
    _check_pairs(inputs, labels)
    part = dataset.subset(torch.tensor([3, 4]))
    assert part.device.type == "cuda" and part.labels.tolist() == [3, 4]


def test_tensor_dataset_augments_only_with_a_transform():
    plain = make_tensor_dataset(12)
    with pytest.raises(ValueError, match="augment=True needs a transform"):
        plain.batches(4, augment=True)  # on the call, before iteration
    seen = []

    def jitter(inputs, generator):
        seen.append(generator)
        return inputs + torch.rand(len(inputs), 1, 1, generator=generator).to(inputs.device)

    dataset = make_tensor_dataset(12, transform=jitter)

    def epoch(augment, seed=0):
        generator = torch.Generator().manual_seed(seed)
        return list(dataset.batches(4, generator=generator, augment=augment))

    first, again, other, plain_epoch = epoch(True), epoch(True), epoch(True, 1), epoch(False)
    assert all(isinstance(g, torch.Generator) for g in seen) and len(seen) == 9
    for (x, y), (x2, y2), (x3, y3) in zip(first, again, plain_epoch):
        assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(y, y3)
        assert torch.all((x - x3 > 0) & (x - x3 < 1))  # jittered, the order untouched
        _check_pairs(x3, y3)
    assert not torch.equal(first[0][0], other[0][0])
    bad = make_tensor_dataset(12, transform=lambda inputs, generator: inputs[:1])
    with pytest.raises(ValueError, match=r"transform must return a tensor of 4 inputs, got shape"):
        list(bad.batches(4, augment=True))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(inputs=[[0.0]] * 4),
            TypeError,
            "inputs must be a torch.Tensor or NumPy array, got list",
        ),
        (
            dict(inputs=np.array([None] * 4)),
            TypeError,
            "inputs must be .* numbers or bools, got an array of dtype object",
        ),
        (dict(inputs=torch.tensor(1.0)), ValueError, r"inputs must have shape \(N, ...\)"),
        (dict(labels=np.arange(3)), ValueError, "labels has 3 entries for 4 inputs"),
        (
            dict(labels=np.zeros(4)),
            ValueError,
            "labels must be a 1-D integer tensor, got dtype torch.float64",
        ),
        (dict(labels=np.zeros((4, 1), int)), ValueError, r"and shape \(4, 1\)"),
        (dict(labels=np.ones(4, bool)), ValueError, "got dtype torch.bool"),
        (
            dict(labels=np.array([0, 1, 2, 3])),
            ValueError,
            r"labels must lie in \[0, 3\), got 3 at index 3",
        ),
        (dict(labels=np.array([0, -1, 2, 1])), ValueError, r"got -1 at index 1"),
        (dict(num_classes=0), ValueError, "num_classes must be a positive int, got 0"),
        (dict(num_classes=2.0), ValueError, "num_classes must be a positive int, got 2.0"),
        (dict(transform="flip"), TypeError, "transform must be a callable .* got str"),
    ],
)
def test_tensor_dataset_rejects_bad_arguments(kwargs, error, match):
    arguments = dict(inputs=np.zeros((4, 3), np.float32), labels=np.arange(4), num_classes=3)
    arguments["labels"] = np.array([0, 1, 2, 0])
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        TensorDataset(**arguments)


def test_tensor_dataset_batches_reject_bad_arguments():
    dataset = make_tensor_dataset(10)
    cases = [
        (dict(batch_size=0), ValueError, "batch_size must be a positive int, got 0"),
        (dict(world_size=0), ValueError, "world_size must be a positive int, got 0"),
        (dict(rank=2, world_size=2), ValueError, r"rank must be an int in \[0, 2\), got 2"),
        (dict(generator=0), TypeError, "generator must be a CPU torch.Generator"),
        (dict(padding=4), TypeError, "padding"),  # CIFAR's crop only
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            dataset.batches(**(dict(batch_size=4) | kwargs))


def test_split_of_a_tensor_dataset():
    def transform(inputs, generator):
        return inputs

    dataset = make_tensor_dataset(50, num_classes=50, transform=transform)
    train, val = split(dataset, 10, seed=3)
    assert isinstance(train, TensorDataset) and isinstance(val, TensorDataset)
    assert (len(train), len(val)) == (40, 10)
    train_ids, val_ids = train.labels.tolist(), val.labels.tolist()
    assert train_ids == sorted(train_ids) and val_ids == sorted(val_ids)
    assert set(train_ids) | set(val_ids) == set(range(50)) and not set(train_ids) & set(val_ids)
    _check_pairs(train.inputs, train.labels)
    assert train.transform is transform and val.num_classes == 50
    cifar_val = split(make_dataset(50, num_classes=50), 10, seed=3)[1]
    assert val_ids == cifar_val.labels.tolist()  # the same split for the same length and seed
    with pytest.raises(ValueError, match=r"num_val \(for a dataset of 50 items\)"):
        split(dataset, 50)
