"""Datasets held on a device and served as whole-batch tensor operations."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._validate import int_in_range, positive_int
from .cifar import CIFAR10_MEAN, CIFAR10_STD

__all__ = ["CifarDataset", "TensorDataset", "crop_flip", "normalize", "split"]

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


class _Batched:
    """What every dataset here shares: its length, its device and its epoch's index batches.

    A subclass sets :attr:`labels`, one entry per item, on its device.
    """

    labels: torch.Tensor

    @property
    def device(self) -> torch.device:
        """The device holding the data."""
        return self.labels.device

    def __len__(self) -> int:
        return self.labels.shape[0]

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


class CifarDataset(_Batched):
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


class TensorDataset(_Batched):
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
