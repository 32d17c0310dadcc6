"""Tests for dynamicblocks.data.load_stl10: tiny files in the official binary format."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dynamicblocks.data import (
    STL10_URL,
    CifarDataset,
    Stl10Arrays,
    Stl10NotFoundError,
    load_stl10,
)

IMAGE_BYTES = 3 * 96 * 96
REQUIRED = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")


def make_images(n: int, seed: int) -> np.ndarray:
    """``(n, 3, 96, 96)`` uint8 images, none equal to its own transpose."""
    images = np.random.default_rng(seed).integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
    assert all((image != image.transpose(0, 2, 1)).any() for image in images)
    return images


def write_images(path: Path, images: np.ndarray) -> None:
    """Write ``(N, 3, 96, 96)`` images as STL-10 does: each channel column by column."""
    path.write_bytes(images.transpose(0, 1, 3, 2).tobytes())


def write_labels(path: Path, labels: list[int]) -> None:
    path.write_bytes(np.asarray(labels, np.uint8).tobytes())


TRAIN, TEST, UNLABELED = make_images(3, 0), make_images(2, 1), make_images(4, 2)
TRAIN_LABELS, TEST_LABELS = [1, 10, 5], [10, 1]


def write_folder(root: Path, unlabeled: bool = False) -> Path:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    write_images(folder / "train_X.bin", TRAIN)
    write_labels(folder / "train_y.bin", TRAIN_LABELS)
    write_images(folder / "test_X.bin", TEST)
    write_labels(folder / "test_y.bin", TEST_LABELS)
    (folder / "class_names.txt").write_text("airplane\nbird\ncar\ncat\ndeer\n")
    if unlabeled:
        write_images(folder / "unlabeled_X.bin", UNLABELED)
    return folder


def check_loaded(arrays: Stl10Arrays) -> None:
    assert isinstance(arrays, Stl10Arrays)
    assert arrays.name == "stl10" and arrays.num_classes == 10
    for images, expected in ((arrays.train_images, TRAIN), (arrays.test_images, TEST)):
        assert images.dtype == np.uint8 and images.shape == expected.shape
        assert images.flags.c_contiguous
        np.testing.assert_array_equal(images, expected)
    for labels, expected in (
        (arrays.train_labels, TRAIN_LABELS),
        (arrays.test_labels, TEST_LABELS),
    ):
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, np.asarray(expected) - 1)


def test_round_trip_undoes_the_column_major_layout(tmp_path):
    write_folder(tmp_path)
    arrays = load_stl10(tmp_path)
    check_loaded(arrays)
    # One pixel by hand: byte (c, column, row) of the file is pixel (c, row, column).
    raw = np.frombuffer((tmp_path / "stl10_binary" / "train_X.bin").read_bytes(), np.uint8)
    c, row, column = 2, 7, 90
    assert arrays.train_images[0, c, row, column] == raw[c * 96 * 96 + column * 96 + row]
    assert arrays.unlabeled_images is None


def test_labels_1_to_10_become_0_to_9(tmp_path):
    write_folder(tmp_path)
    arrays = load_stl10(tmp_path)
    assert arrays.train_labels.tolist() == [0, 9, 4]
    assert arrays.test_labels.tolist() == [9, 0]


def test_root_may_be_the_data_dir_or_stl10_binary_itself(tmp_path):
    folder = write_folder(tmp_path / "data")
    check_loaded(load_stl10(tmp_path / "data"))
    check_loaded(load_stl10(folder))
    check_loaded(load_stl10(str(folder)))
    renamed = folder.rename(tmp_path / "elsewhere")  # any folder holding the files
    check_loaded(load_stl10(renamed))


def test_unlabeled_split_is_loaded_only_when_asked(tmp_path):
    folder = write_folder(tmp_path, unlabeled=True)
    assert load_stl10(tmp_path).unlabeled_images is None
    arrays = load_stl10(tmp_path, unlabeled=True)
    check_loaded(arrays)
    assert arrays.unlabeled_images.dtype == np.uint8
    np.testing.assert_array_equal(arrays.unlabeled_images, UNLABELED)
    # Not read unless asked: a broken unlabeled file does not matter then.
    (folder / "unlabeled_X.bin").write_bytes(b"\x00" * 5)
    check_loaded(load_stl10(tmp_path))
    with pytest.raises(ValueError, match=re.escape(str(folder / "unlabeled_X.bin"))):
        load_stl10(tmp_path, unlabeled=True)


def test_missing_unlabeled_file_is_named_only_when_asked(tmp_path):
    folder = write_folder(tmp_path)
    check_loaded(load_stl10(tmp_path))
    with pytest.raises(
        Stl10NotFoundError, match=f"{re.escape(str(folder))} lacks unlabeled_X.bin;"
    ):
        load_stl10(tmp_path, unlabeled=True)


def test_missing_folder_says_where_to_get_and_extract_the_archive(tmp_path):
    with pytest.raises(Stl10NotFoundError) as info:
        load_stl10(tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert f"{tmp_path / 'stl10_binary'} does not exist" in message
    for name in REQUIRED:
        assert name in message
    assert "unlabeled_X.bin" not in message
    assert STL10_URL in message
    assert f"tar -xzf stl10_binary.tar.gz -C {tmp_path}" in message


@pytest.mark.parametrize("missing", [("test_y.bin",), ("train_X.bin", "test_X.bin")])
def test_missing_files_are_named(tmp_path, missing):
    folder = write_folder(tmp_path)
    for name in missing:
        (folder / name).unlink()
    for root in (tmp_path, folder):
        with pytest.raises(Stl10NotFoundError) as info:
            load_stl10(root)
        message = str(info.value)
        assert f"{folder} lacks {', '.join(missing)};" in message
        assert f"tar -xzf stl10_binary.tar.gz -C {tmp_path}" in message


def test_truncated_image_file(tmp_path):
    folder = write_folder(tmp_path)
    path = folder / "train_X.bin"
    path.write_bytes(path.read_bytes()[:-1])
    expected = f"{path}: {3 * IMAGE_BYTES - 1} bytes is not a multiple of {IMAGE_BYTES}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_stl10(tmp_path)


@pytest.mark.parametrize("name", ["train_X.bin", "test_X.bin"])
def test_empty_image_file(tmp_path, name):
    folder = write_folder(tmp_path)
    (folder / name).write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(f"{folder / name}: the file is empty")):
        load_stl10(tmp_path)


@pytest.mark.parametrize(
    ("labels", "got"), [([1, 2], "2 labels"), ([], "0 labels (the file is empty)")]
)
def test_label_count_must_match_image_count(tmp_path, labels, got):
    folder = write_folder(tmp_path)
    path = folder / "train_y.bin"
    write_labels(path, labels)
    expected = f"{path}: {got} for the 3 images of train_X.bin"
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_stl10(tmp_path)


@pytest.mark.parametrize("bad", [0, 11, 255])
def test_labels_outside_1_to_10_are_refused(tmp_path, bad):
    folder = write_folder(tmp_path)
    path = folder / "test_y.bin"
    write_labels(path, [3, bad])
    expected = f"{path}: labels must lie in 1..10 (STL-10 numbers its classes from 1), got {bad}"
    with pytest.raises(ValueError, match=re.escape(expected) + " at index 1"):
        load_stl10(tmp_path)


def test_bad_arguments(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(TypeError, match="unlabeled must be a bool, got 1"):
        load_stl10(tmp_path, unlabeled=1)
    file = tmp_path / "file"
    file.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=re.escape(f"got the file {file}")):
        load_stl10(file)


def test_loaded_arrays_feed_the_dataset(tmp_path):
    write_folder(tmp_path)
    arrays = load_stl10(tmp_path)
    dataset = CifarDataset(arrays.train_images, arrays.train_labels, arrays.num_classes)
    images, labels = next(dataset.batches(3, shuffle=False))
    assert images.shape == (3, 3, 96, 96)
    assert labels.tolist() == [0, 9, 4]


@pytest.mark.parametrize("chunk", [1, 2])
def test_images_read_in_several_chunks(tmp_path, monkeypatch, chunk):
    from dynamicblocks.data import stl10

    monkeypatch.setattr(stl10, "_CHUNK", chunk)
    write_folder(tmp_path, unlabeled=True)
    arrays = load_stl10(tmp_path, unlabeled=True)
    check_loaded(arrays)
    np.testing.assert_array_equal(arrays.unlabeled_images, UNLABELED)
