"""Memory modes: how a block's backward pass gets the activations it needs.

Every block has a ``memory`` attribute (a constructor argument of the
explicit blocks, settable on all blocks, or for a whole network by
:func:`set_memory`):

``"full"`` (default)
    Autograd stores every stage's activations: memory grows with the number
    of steps and stages; the gradient is exactly that of the discrete forward
    pass.
``"checkpoint"``
    The steps run in segments of ``ceil(sqrt(N))``; each segment's input is
    stored and the segment is recomputed in backward
    (``torch.utils.checkpoint``, non-reentrant, RNG state preserved), as in
    ANODE (Gholami et al., arXiv:1902.10298) with the segment length of Chen
    et al. (arXiv:1604.06174). The gradients equal ``"full"``'s; memory is
    ``O(sqrt(N))`` states plus one segment's activations; time is about one
    more forward pass. Offered by every block but
    :class:`~dynamicblocks.ImplicitBlock`.
``"adjoint"``
    Nothing is stored but the output; backward solves the adjoint equation
    over the reversed grid with the block's own scheme
    (:mod:`dynamicblocks.memory.adjoint`). Memory is one step's, independent of the
    number of steps; the gradient is that of the continuous problem, which
    converges to ``"full"``'s as the grid is refined.
    :class:`~dynamicblocks.DynamicBlock` only.
``"reversible"``
    Nothing is stored but the output; backward rebuilds the states step by
    step with the block's exact inverse (:mod:`dynamicblocks.memory.reversible`).
    Gradients equal ``"full"``'s up to the round-off of the inverse.
    :class:`~dynamicblocks.HamiltonianBlock` and
    :class:`~dynamicblocks.LeapfrogBlock` only: a block must be invertible.

BatchNorm in each mode: in training mode a BatchNorm normalises by the
statistics of its current input and updates its running statistics once per
forward evaluation. ``"checkpoint"`` and ``"reversible"`` recompute on the
same states, so their normalisation, outputs and gradients equal ``"full"``'s;
the recomputation's second update of the running statistics is undone, so the
buffers after forward and backward are also those of ``"full"``. ``"adjoint"``
evaluates the layers at *other* points (the stages of the reversed grid, on
rebuilt states), whose batch statistics differ: its gradients are those of the
adjoint equation with the BatchNorm of those states (running statistics again
left as the forward pass left them). In eval mode there is no difference.
:class:`~dynamicblocks.ImplicitBlock` offers ``"full"`` only: its backward,
by the implicit function theorem, already stores no solver iterations.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from .._validate import one_of

__all__ = ["MEMORY_MODES", "MemoryModule", "set_memory"]

MEMORY_MODES = ("full", "checkpoint", "adjoint", "reversible")
"""Every memory mode; each block class lists those it offers in ``memory_modes``."""

_NEEDS = {
    "reversible": "'reversible' needs an invertible block (HamiltonianBlock, LeapfrogBlock), "
    "whose method has an exact inverse step",
    "adjoint": "'adjoint' needs an explicit method with an adjoint step (DynamicBlock)",
    "checkpoint": "the block's backward pass stores no activations of the solve already",
}


class MemoryModule(nn.Module):
    """A module with a memory mode: the base of every block.

    ``memory_modes`` (a class attribute) lists the modes the class offers, as
    its method allows (see :meth:`dynamicblocks.methods.base.Method.memory_modes`).
    """

    memory_modes: ClassVar[tuple[str, ...]] = ("full",)
    _memory: str = "full"

    @property
    def memory(self) -> str:
        """How backward gets the activations, one of :attr:`memory_modes`. Settable.

        See :mod:`dynamicblocks.memory` for the modes.
        """
        return self._memory

    @memory.setter
    def memory(self, mode: str) -> None:
        if mode not in self.memory_modes:
            method = getattr(self, "method", None)
            named = f" (method {method.name})" if method is not None else ""
            hint = f"; {_NEEDS[mode]}" if mode in _NEEDS else ""
            raise ValueError(
                f"{type(self).__name__}.memory must be one of {self.memory_modes}, "
                f"got {mode!r}{named}{hint}"
            )
        self._memory = mode


def set_memory(module: nn.Module, mode: str) -> list[str]:
    """Set the memory mode of every block inside ``module`` (itself included).

    Returns:
        The names (``module.named_modules()``) of the blocks that were set.

    Raises:
        ValueError: for an unknown mode, a module without blocks, or a block
            that does not offer ``mode`` (e.g. ``"reversible"`` on a
            :class:`~dynamicblocks.DynamicBlock`); then no block is changed.
    """
    one_of("mode", mode, MEMORY_MODES)
    blocks = [(name, m) for name, m in module.named_modules() if isinstance(m, MemoryModule)]
    if not blocks:
        raise ValueError(f"{type(module).__name__} contains no block to set the memory mode of")
    for name, block in blocks:
        if mode not in block.memory_modes:
            try:
                block.memory = mode  # raises the block's own message
            except ValueError as error:
                raise ValueError(f"block {name or '(the module)'!r}: {error}") from None
    for _, block in blocks:
        block.memory = mode
    return [name for name, _ in blocks]
