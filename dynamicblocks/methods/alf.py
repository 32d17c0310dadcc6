"""The asynchronous leapfrog (ALF) for any field ``x' = f(t, x)`` and :class:`ALFBlock`.

ALF (Zhuang, Dvornek, Tatikonda & Duncan, 2021, the integrator of MALI)
carries the state ``z`` and a velocity ``v`` that approximates ``f``; a step
of size ``h`` is::

    s       = z_k + h/2 v_k
    u       = f(t_k + h/2, s)
    v_{k+1} = 2 u - v_k
    z_{k+1} = s + h/2 v_{k+1}

one evaluation, at the midpoint. Its inverse evaluates the same field at the
same point::

    s   = z_{k+1} - h/2 v_{k+1},  u = f(t_k + h/2, s),
    v_k = 2 u - v_{k+1},          z_k = s - h/2 v_k

so ``memory="reversible"`` gives the gradients of backpropagation through the
same forward pass in memory independent of the number of steps. The method is
second order with ``v_0 = f(t_0, z_0)`` (MALI's start); on ``y' = lambda y``
its characteristic polynomial is ``mu^2 - 2 h lambda mu - 1``, the same as
reversible Heun's: stable only on the open segment ``(-i, i)``.

Reference:
    J. Zhuang, N. C. Dvornek, S. Tatikonda, J. S. Duncan, "MALI: a memory
    efficient and reverse accurate integrator for neural ODEs", ICLR 2021,
    arXiv:2102.04668.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..core.block import TimeBlock
from ..core.fields import Evaluation, Initial
from ..grid import GridLike
from .base import Method, State

__all__ = ["AsynchronousLeapfrog", "ALFBlock"]

Pair = tuple[torch.Tensor, torch.Tensor]


class _Step(NamedTuple):
    h: float
    middle: Evaluation  # f(t_k + h/2, .)
    start: Initial  # f(t_0, .): v_0 when no velocity is given


class AsynchronousLeapfrog(Method):
    """ALF: the state is ``(z, v)``; a missing ``v`` starts as ``f(t_0, z_0)``."""

    live_times = (0.5,)
    time_scalable = True
    quadrature = True  # the midpoint rule

    @property
    def name(self) -> str:
        return "alf"

    def plan(self, t: Sequence[float], resolve: Any) -> tuple[_Step, ...]:
        return tuple(
            _Step(t_next - t_k, resolve(k, 0.5), Initial(*resolve(k, 0.0)))
            for k, (t_k, t_next) in enumerate(zip(t, t[1:]))
        )

    def step(self, plan: _Step, state: State, evaluate: Any) -> State:
        z, v = state
        if v is None:
            v = evaluate(plan.start, z)
        s = torch.add(z, v, alpha=0.5 * plan.h)
        v_next = torch.mul(evaluate(plan.middle, s, weight=plan.h), 2.0).sub_(v)
        return torch.add(s, v_next, alpha=0.5 * plan.h), v_next

    def inverse_step(self, plan: _Step, state: State, evaluate: Any) -> State:
        z_next, v_next = state
        s = torch.sub(z_next, v_next, alpha=0.5 * plan.h)
        v = torch.mul(evaluate(plan.middle, s), 2.0).sub_(v_next)
        return torch.sub(s, v, alpha=0.5 * plan.h), v


class ALFBlock(TimeBlock):
    """A block ``x' = f(x; theta(t))`` by the asynchronous leapfrog, invertible for any field.

    One evaluation of ``f`` per step (one more at the start) and an exact
    inverse, so the default ``memory="reversible"`` stores nothing but the
    output: the gradients equal ``memory="full"``'s up to round-off, in memory
    independent of the number of steps. Second order on any grid; stable only
    for (nearly) imaginary Jacobian eigenvalues with ``h |lambda| < 1`` (see
    :mod:`dynamicblocks.methods.alf`).

    Weights: the evaluation of step ``k`` uses ``theta(t_k + h_k / 2)``
    (the start ``v_0 = f(t_0, x)`` uses ``theta(t_0)``) from the controls at
    ``t_theta`` (default ``t[:-1]``), ``"constant"`` or ``"linear"``.

    Args:
        layer: prototype of ``f``, a module mapping a state to the same shape;
            the block holds ``len(t_theta)`` deep copies in :attr:`layers`.
        t: the state grid, strictly increasing, at least two points.
        t_theta: control times, strictly increasing, at least one point.
        interpolation: ``"constant"`` or ``"linear"``.
        memory: ``"reversible"`` (default), ``"full"`` or ``"checkpoint"``
            (see :mod:`dynamicblocks.memory`).

    Raises:
        TypeError: if ``layer`` is not an ``nn.Module``, or a grid is not a
            sequence of real numbers.
        ValueError: for an invalid grid, interpolation or memory mode, or a
            control time outside ``[t[0], t[-1]]`` that no evaluation uses.

    Shape:
        input ``(N, *)``, output the same; ``return_pair`` gives ``(z_N, v_N)``,
        ``return_trajectory`` ``(len(t), N, *)`` (``z_0, ..., z_N``).
    """

    memory_modes = AsynchronousLeapfrog.memory_modes()
    fixed_scheme = "alf"

    def __init__(
        self,
        layer: nn.Module,
        t: GridLike,
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
        memory: str = "reversible",
    ) -> None:
        super().__init__()
        self._build(AsynchronousLeapfrog(), (layer,), t, t_theta, interpolation, memory)

    def forward(
        self,
        x: torch.Tensor,
        v: torch.Tensor | None = None,
        *,
        return_pair: bool = False,
        return_trajectory: bool = False,
    ) -> torch.Tensor | Pair:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``z_0 = x``.

        Args:
            x: the initial state ``z_0``, shape ``(N, *)``.
            v: the initial velocity ``v_0`` (default ``f(t_0, x)``; pass the
                ``v`` of a previous block's ``return_pair`` to continue it).
            return_pair: if true, return ``(z_N, v_N)``, the input of
                :meth:`inverse`.
            return_trajectory: if true, return ``z_0, ..., z_N`` stacked as
                ``(len(t), N, *)``.

        Raises:
            ValueError: if both ``return_pair`` and ``return_trajectory`` are
                set, or the layer returns another shape than its input's.
        """
        return self._run((x, v), return_trajectory, return_pair)

    def inverse(self, z: torch.Tensor, v: torch.Tensor) -> Pair:
        """Recover ``(z_0, v_0)`` from ``(z_N, v_N)`` (``forward(..., return_pair=True)``).

        Exact up to round-off; one evaluation per step.
        """
        return self._inverse((z, v))
