"""Tests for dynamicblocks.data: CIFAR loading, validation, batching and augmentation.

Every archive here is a tiny one written in tmp_path in the official format;
nothing touches the network (the downloader is replaced where it matters).
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import re
import tarfile
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

    monkeypatch.setattr(data, "_download", offline)


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

    monkeypatch.setattr(data, "_download", wrong)
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

    monkeypatch.setattr(data, "_download", fetch)
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
    "float labels": (_edit(b"labels", [0.5] * 20), "1-D sequence of ints"),
    "ragged labels": (_edit(b"labels", [[0, 1]] * 19 + [[0]]), "not a sequence of ints"),
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
    with pytest.raises(TypeError, match="dataset must be a CifarDataset, got ndarray"):
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
