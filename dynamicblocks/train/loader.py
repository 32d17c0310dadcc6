"""A ``torch.utils.data.DataLoader`` served through the dataset interface the trainer uses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

__all__ = ["LoaderData", "as_data"]


class LoaderData:
    """Wraps a :class:`~torch.utils.data.DataLoader` of ``(inputs, labels)`` batches.

    The loader's own batch size, sampler and workers are used as they are;
    each batch is moved to :attr:`device` (non-blocking). Shuffling is the
    loader's: with ``shuffle=True`` and no ``generator`` it draws from
    torch's global generator, which a resumed run restores, so resuming stays
    exact. A sampler with ``set_epoch`` (such as
    :class:`~torch.utils.data.distributed.DistributedSampler`, which each rank
    needs under ``torchrun``) is told the epoch before each pass.
    """

    def __init__(self, loader: DataLoader, device: torch.device | str | None = None) -> None:
        if not isinstance(loader, DataLoader):
            raise TypeError(f"loader must be a torch DataLoader, got {type(loader).__name__}")
        try:
            len(loader)
        except TypeError:
            raise TypeError(
                "loader must have a length (a map-style dataset or a sized iterable), "
                "got a DataLoader without one"
            ) from None
        self.loader = loader
        self._device = torch.device(device or "cpu")

    @property
    def device(self) -> torch.device:
        """Where the batches are moved to."""
        return self._device

    def __len__(self) -> int:
        return len(self.loader.dataset)

    def num_batches(self) -> int:
        """Batches per pass over the loader."""
        return len(self.loader)

    def to(self, device: torch.device | str) -> LoaderData:
        """The same loader, its batches moved to ``device``."""
        return LoaderData(self.loader, device)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the loader (epoch ``epoch``, counted from 0)."""
        set_epoch = getattr(self.loader.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        return self._moved(iter(self.loader))

    def batches(self, batch_size: int = 0, shuffle: bool = False, **_: Any) -> Iterator:
        """One pass in the loader's order, for evaluation (the arguments are ignored)."""
        return self._moved(iter(self.loader))

    def _moved(self, batches: Iterator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index, batch in enumerate(batches):
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise ValueError(
                    f"the DataLoader must yield (inputs, labels) pairs, got "
                    f"{type(batch).__name__} at batch {index}"
                )
            inputs, labels = batch
            yield (
                inputs.to(self._device, non_blocking=True),
                labels.to(self._device, dtype=torch.int64, non_blocking=True),
            )


def as_data(data: Any, device: torch.device) -> Any:
    """``data`` on ``device``: a DataLoader wrapped in :class:`LoaderData`, a dataset moved."""
    if isinstance(data, DataLoader):
        return LoaderData(data, device)
    if not all(hasattr(data, name) for name in ("batches", "to", "__len__")):
        raise TypeError(
            "data must be a dynamicblocks dataset (CifarDataset, TensorDataset) or a "
            f"torch DataLoader, got {type(data).__name__}"
        )
    return data.to(device)
