"""What every block on a time grid shares: grid, control times, evaluating a control."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from ._buffers import buffers_restored
from ._validate import check_layer_output, format_times
from .weights import StageControl

State = tuple  # a block's state between steps: one tensor, or two (streams, or y_k and y_{k-1})

__all__ = ["TimeBlock", "blend_parameters", "evaluate_control", "check_module", "format_times"]


def check_module(name: str, value: object) -> nn.Module:
    """Return ``value`` if it is an ``nn.Module``, else raise a TypeError naming ``name``."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {type(value).__name__}")
    return value


def blend_parameters(
    names: tuple[str, ...], left: nn.Module, right: nn.Module, weight: float
) -> dict[str, torch.Tensor]:
    """``(1 - weight) * left + weight * right`` for every parameter, keyed by ``names``."""
    pairs = zip(names, left.parameters(), right.parameters())
    return {name: torch.lerp(p, q, weight) for name, p, q in pairs}


def evaluate_control(
    layers: Sequence[nn.Module],
    names: tuple[str, ...],
    control: StageControl,
    x: torch.Tensor,
    block: str | None = None,
    shape: torch.Size | None = None,
) -> torch.Tensor:
    """The field at ``x`` with the weights ``control`` stands for.

    A control ``left`` as it is, or ``(1 - w) theta[left] + w theta[right]``
    evaluated by the ``owner`` module (whose buffers are used), with ``names``
    the parameter names of one control.

    With ``block`` (the block's name for the message) the output is checked
    to be a tensor of shape ``shape`` (default: ``x``'s), a comparison of host
    metadata that costs no device synchronisation.

    Raises:
        ValueError: if checked and the output has another shape (or is not a tensor).
    """
    module = layers[control.owner]
    if control.right is None:
        out = module(x)
    else:
        params = blend_parameters(
            names, layers[control.left], layers[control.right], control.weight
        )
        out = functional_call(module, params, (x,))
    if block is not None:
        check_layer_output(block, module, x, out, shape)
    return out


class TimeBlock(nn.Module):
    """Base of the blocks: a state grid ``t``, control times ``t_theta``, an interpolation.

    Subclasses set ``_t``, ``_t_theta`` and ``_interpolation``, and list the
    memory modes they offer in ``memory_modes`` (see :mod:`dynamicblocks.memory`).
    """

    _t: tuple[float, ...]
    _t_theta: tuple[float, ...]
    _interpolation: str
    _memory: str = "full"
    memory_modes: tuple[str, ...] = ("full",)

    @property
    def memory(self) -> str:
        """How backward gets the activations, one of :attr:`memory_modes`. Settable.

        See :mod:`dynamicblocks.memory` for the modes.
        """
        return self._memory

    @memory.setter
    def memory(self, mode: str) -> None:
        if mode not in self.memory_modes:
            hint = ""
            if mode == "reversible":
                hint = "; 'reversible' needs an invertible block (HamiltonianBlock, LeapfrogBlock)"
            elif mode == "adjoint":
                hint = "; 'adjoint' is offered by DynamicBlock"
            raise ValueError(
                f"{type(self).__name__}.memory must be one of {self.memory_modes}, "
                f"got {mode!r}{hint}"
            )
        self._memory = mode

    @property
    def t(self) -> tuple[float, ...]:
        """The state grid."""
        return self._t

    @property
    def t_theta(self) -> tuple[float, ...]:
        """The control times."""
        return self._t_theta

    @property
    def interpolation(self) -> str:
        """How weights depend on time: ``"constant"`` or ``"linear"``."""
        return self._interpolation

    @property
    def num_steps(self) -> int:
        """Number of time steps ``len(t) - 1``."""
        return len(self._t) - 1

    def _recompute_context(self) -> tuple[AbstractContextManager, AbstractContextManager]:
        """Checkpointing's contexts: none for the forward, buffers kept for the recomputation."""
        return nullcontext(), buffers_restored(self)

    def _march(
        self,
        step: Callable[..., State],
        state: State,
        checkpointed: bool,
        keep: bool,
    ) -> list[State]:
        """Apply ``state = step(k, *state)`` for every step ``k`` of the grid.

        Returns the states after every step if ``keep``, else a list holding
        the last one. With ``checkpointed`` the steps run in segments of
        ``ceil(sqrt(N))`` consecutive steps through ``torch.utils.checkpoint``
        (non-reentrant, RNG state preserved, buffers restored after the
        recomputation): autograd keeps each segment's input state (and the
        states asked for), and backward recomputes one segment at a time, so
        memory grows like ``sqrt(N)`` (Chen et al., "Training deep nets with
        sublinear memory cost", arXiv:1604.06174).
        """
        steps = self.num_steps
        if not checkpointed:
            states = []
            for k in range(steps):
                state = step(k, *state)
                if keep:
                    states.append(state)
            return states if keep else [state]
        length = math.isqrt(steps - 1) + 1  # ceil(sqrt(steps))
        width, states = len(state), []
        for start in range(0, steps, length):
            stop = min(start + length, steps)

            def segment(*state: torch.Tensor | None, start: int = start, stop: int = stop):
                out: list[torch.Tensor | None] = []
                for k in range(start, stop):
                    state = step(k, *state)
                    if keep or k == stop - 1:
                        out.extend(state)
                return tuple(out)

            flat = checkpoint(
                segment, *state, use_reentrant=False, context_fn=self._recompute_context
            )
            chunks = [tuple(flat[i : i + width]) for i in range(0, len(flat), width)]
            states.extend(chunks)
            state = chunks[-1]
        return states if keep else [state]

    def control_layers(self) -> tuple[nn.ModuleList, ...]:
        """The block's per-control copies of its layer(s), one list per field, in time order."""
        return (self.layers,)

    def reset_parameters(self) -> None:
        """Re-initialise every control independently (each submodule's ``reset_parameters``)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
