"""The guards every hand-written backward pass shares (adjoint and reversible).

A backward pass that recomputes the forward evaluations must see the block as
the forward pass saw it: the same parameters (not changed in place by an
optimiser step in between: checked), every submodule in the training mode it
had (so switching ``eval()`` in between is harmless), and buffers that end as
one forward pass left them (BatchNorm running statistics are restored after
the recomputation). Double backward is refused: these passes run their
recomputation without recording autograd.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .._buffers import buffers_restored

__all__ = ["record", "replay"]


def record(ctx: Any, block: nn.Module, params: Sequence[torch.Tensor]) -> None:
    """Keep on ``ctx`` what backward needs to check and replay the block (no tensors copied)."""
    ctx.block = block
    ctx.params = tuple(params)
    ctx.versions = tuple(p._version for p in params)
    ctx.modes = tuple((module, module.training) for module in block.modules())


def _check_versions(ctx: Any, mode: str) -> None:
    if any(p._version != v for p, v in zip(ctx.params, ctx.versions)):
        raise RuntimeError(
            f"a parameter of the block was modified in place between the forward and the "
            f"backward pass (e.g. by an optimizer step); memory={mode!r} recomputes "
            "the steps with the current parameters and would give wrong gradients"
        )


@contextmanager
def replay(ctx: Any, mode: str) -> Iterator[None]:
    """Check the parameters, then run the body in forward's training modes, buffers restored.

    Raises:
        RuntimeError: if a parameter was modified in place since forward.
    """
    _check_versions(ctx, mode)
    current = [(module, module.training) for module, _ in ctx.modes]
    try:
        for module, training in ctx.modes:
            module.training = training
        with buffers_restored(ctx.block):
            yield
    finally:
        for module, training in current:
            module.training = training


def first_order_only(mode: str) -> Callable:
    """Decorate a ``backward`` to refuse ``create_graph=True`` with a message naming ``mode``."""

    def decorate(backward: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
        @functools.wraps(backward)
        def wrapper(ctx: Any, *grads: torch.Tensor) -> tuple[Any, ...]:
            if torch.is_grad_enabled():  # the engine enables grad mode for create_graph=True
                raise RuntimeError(
                    f"memory={mode!r} does not support double backward (create_graph=True); "
                    "use memory='full' or 'checkpoint'"
                )
            return backward(ctx, *grads)

        return wrapper

    return decorate
