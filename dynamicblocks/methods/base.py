"""What a method (a solver, in diffrax's words) supplies to the block core.

A method says how one step goes, from a plan it builds once, at construction,
for every step of the grid. It holds no tensors and touches no modules: it asks
the block's :class:`~dynamicblocks.core.Resolver` for the evaluations it needs
(a field at a time ``t_k + c h_k``), and its step receives the block's
:class:`~dynamicblocks.core.Fields` to evaluate them. Everything else (grid,
controls, copies of the layer, blending, the loop, memory modes, refinement,
projection) is the core's.

What a method offers decides the memory modes of its blocks
(:mod:`dynamicblocks.memory`): every method gets ``"full"`` and
``"checkpoint"``; one with an ``adjoint_step`` gets ``"adjoint"``; one with an
``inverse_step`` gets ``"reversible"`` and the block's ``inverse``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch

__all__ = ["Method", "State"]

State = tuple  # the state between steps: e.g. (x,), (y, z) or (y_k, y_{k-1})
Evaluate = Callable[..., torch.Tensor]  # Fields, or a stand-in with its call signature


class Method:
    """Base of the methods: subclasses set the class attributes, define ``plan`` and ``step``.

    Class attributes a method sets:

    * ``fields``: how many layer functions (fields) the method's blocks hold;
    * ``live_times``: the times ``c`` (fractions of a step) of the
      evaluations whose value reaches the step's result, for
      :func:`~dynamicblocks.weights.check_controls_used` (an instance may
      override it);
    * ``time_scalable``: whether multiplying every field by ``s`` integrates
      the same ODE over an ``s`` times longer interval (first-order methods;
      needed by STEER, :attr:`~dynamicblocks.core.TimeBlock.steer`);
    * ``quadrature``: whether ``step`` passes each evaluation its weight in a
      quadrature of the solve (``evaluate(..., weight=h b_i)``), which the
      regularisers of :func:`~dynamicblocks.ode_regularizers` integrate with.
    """

    fields: ClassVar[int] = 1
    live_times: tuple[float, ...] = (0.0,)
    time_scalable: ClassVar[bool] = False
    quadrature: ClassVar[bool] = False

    @property
    def name(self) -> str:
        """A short name for messages and ``repr``."""
        return type(self).__name__

    def describe(self) -> str:
        """The method's part of the block's ``extra_repr`` (empty for none)."""
        return ""

    def plan(self, t: Sequence[float], resolve: Any) -> tuple[Any, ...]:
        """One plan per step of grid ``t``; ``resolve(k, c, field, group)`` gives evaluations."""
        raise NotImplementedError

    def step(self, plan: Any, state: State, evaluate: Evaluate) -> State:
        """The state after one step, from its plan and the state before it."""
        raise NotImplementedError

    # Optional, by what the memory modes need:
    #   inverse_step(plan, state, evaluate) -> State     exact inverse of step
    #   adjoint_step(plan, state, cotangent, fields, grads) -> (State, cotangent)

    @classmethod
    def memory_modes(cls) -> tuple[str, ...]:
        """The memory modes the method's blocks can offer."""
        modes = ["full", "checkpoint"]
        if hasattr(cls, "adjoint_step"):
            modes.append("adjoint")
        if hasattr(cls, "inverse_step"):
            modes.append("reversible")
        return tuple(modes)
