"""Keep buffers (BatchNorm running statistics) unchanged while a forward pass is recomputed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["buffers_restored"]


@contextmanager
def buffers_restored(module: nn.Module) -> Iterator[None]:
    """Run the body, then put every buffer of ``module`` back to its value before it.

    Recomputing a forward pass in backward (checkpointing, the adjoint and
    reversible modes) evaluates the layers a second time; in training mode
    BatchNorm would update its running statistics (and ``num_batches_tracked``)
    again. Restoring them afterwards leaves them as one forward pass left them.
    """
    saved = [(buffer, buffer.detach().clone()) for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
