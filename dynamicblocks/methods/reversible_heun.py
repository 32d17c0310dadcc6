"""Reversible Heun for any field ``x' = f(t, x)`` and :class:`ReversibleHeunBlock`.

The method (Kidger, Foster, Li & Lyons, 2021) keeps two states ``y`` and ``z``
and the field at ``z``::

    z_{k+1} = 2 y_k - z_k + h_k f(t_k, z_k)
    y_{k+1} = y_k + h_k / 2 (f(t_k, z_k) + f(t_{k+1}, z_{k+1}))

``f(t_{k+1}, z_{k+1})`` is carried to the next step, so a step costs one
evaluation (the first step two). The step is algebraically invertible::

    z_k = 2 y_{k+1} - z_{k+1} - h_k f(t_{k+1}, z_{k+1})
    y_k = y_{k+1} - h_k / 2 (f(t_k, z_k) + f(t_{k+1}, z_{k+1}))

so ``memory="reversible"`` rebuilds every state in backward from the output
and the gradients are those of backpropagation through the same forward pass,
with memory independent of the number of steps. The method is second order;
on ``y' = lambda y`` its characteristic polynomial is
``mu^2 - 2 h lambda mu - 1`` (that of the explicit midpoint two-step method),
stable only on the open segment ``(-i, i)`` of the imaginary axis (see
:func:`~dynamicblocks.stability.reversible_amplification`).

Reference:
    P. Kidger, J. Foster, X. Li, T. Lyons, "Efficient and accurate gradients
    for neural SDEs", NeurIPS 2021, arXiv:2105.13493.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..core.block import TimeBlock
from ..core.fields import Carried, Evaluation
from ..grid import GridLike
from .base import Method, State

__all__ = ["ReversibleHeun", "ReversibleHeunBlock"]

Pair = tuple[torch.Tensor, torch.Tensor]


class _Step(NamedTuple):
    h: float
    start: Evaluation  # f(t_k, .): the first step's, and what the inverse rebuilds
    end: Carried  # f(t_{k+1}, .), carried to the next step
    start_weight: float  # the trapezoid weights of the two evaluations in the solve
    end_weight: float


class ReversibleHeun(Method):
    """Reversible Heun: the state is ``(y, z, f(t, z))``; ``f`` may be missing at the start.

    The evaluation at ``t_{k+1}`` is the one the next step starts from (the
    control that owns ``t_{k+1}``), so each grid point has one evaluation;
    the last one is taken at ``c = 1`` of the last step.
    """

    live_times = (0.0, 1.0)
    time_scalable = True
    quadrature = True  # the trapezoid rule on the grid

    @property
    def name(self) -> str:
        return "reversible_heun"

    def plan(self, t: Sequence[float], resolve: Any) -> tuple[_Step, ...]:
        h = [t_next - t_k for t_k, t_next in zip(t, t[1:])]
        last = len(h) - 1
        steps = []
        for k, h_k in enumerate(h):
            end = resolve(k + 1, 0.0) if k < last else resolve(k, 1.0)
            after = h[k + 1] if k < last else 0.0
            steps.append(_Step(h_k, resolve(k, 0.0), Carried(*end), h_k / 2, (h_k + after) / 2))
        return tuple(steps)

    def step(self, plan: _Step, state: State, evaluate: Any) -> State:
        y, z, f = state
        if f is None:
            f = evaluate(plan.start, z, weight=plan.start_weight)
        z_next = torch.sub(y, z).add_(y).add_(f, alpha=plan.h)  # 2 y - z + h f
        f_next = evaluate(plan.end, z_next, weight=plan.end_weight)
        return torch.add(y, torch.add(f, f_next), alpha=0.5 * plan.h), z_next, f_next

    def inverse_step(self, plan: _Step, state: State, evaluate: Any) -> State:
        y_next, z_next, f_next = state
        if f_next is None:
            f_next = evaluate(plan.end, z_next)
        z = torch.sub(y_next, z_next).add_(y_next).sub_(f_next, alpha=plan.h)
        f = evaluate(plan.start, z)
        return torch.sub(y_next, torch.add(f, f_next), alpha=0.5 * plan.h), z, f


class ReversibleHeunBlock(TimeBlock):
    """A block ``x' = f(x; theta(t))`` by reversible Heun, invertible for any field.

    Each step costs one evaluation of ``f`` (the first two) and is exactly
    invertible, so the default ``memory="reversible"`` stores nothing but the
    output and its backward pass rebuilds the states: the gradients equal
    those of ``memory="full"`` up to round-off, in memory independent of the
    number of steps. Second order on any grid, but stable only for fields
    whose Jacobian has (nearly) imaginary eigenvalues with ``h |lambda| < 1``
    (see :mod:`dynamicblocks.methods.reversible_heun`): on dissipative fields
    the second state ``z`` drifts from ``y`` in an oscillating mode.

    Weights: ``f`` at ``t_k`` uses ``theta(t_k)`` from the controls at
    ``t_theta`` (default ``t[:-1]``), ``"constant"`` or ``"linear"``; the
    evaluation at ``t_k`` is shared by the steps on either side of it.

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
        input ``(N, *)``, output the same; ``return_pair`` gives ``(y_N, z_N)``,
        ``return_trajectory`` ``(len(t), N, *)`` (``y_0, ..., y_N``).
    """

    memory_modes = ReversibleHeun.memory_modes()
    fixed_scheme = "reversible_heun"

    def __init__(
        self,
        layer: nn.Module,
        t: GridLike,
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
        memory: str = "reversible",
    ) -> None:
        super().__init__()
        self._build(ReversibleHeun(), (layer,), t, t_theta, interpolation, memory)

    def forward(
        self,
        x: torch.Tensor,
        z: torch.Tensor | None = None,
        *,
        return_pair: bool = False,
        return_trajectory: bool = False,
    ) -> torch.Tensor | Pair:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``y_0 = x``.

        Args:
            x: the initial state ``y_0``, shape ``(N, *)``.
            z: the initial second state ``z_0`` (default ``x``; pass the ``z``
                of a previous block's ``return_pair`` to continue it).
            return_pair: if true, return ``(y_N, z_N)``, the input of
                :meth:`inverse`.
            return_trajectory: if true, return ``y_0, ..., y_N`` stacked as
                ``(len(t), N, *)``.

        Raises:
            ValueError: if both ``return_pair`` and ``return_trajectory`` are
                set, or the layer returns another shape than its input's.
        """
        return self._run((x, x if z is None else z, None), return_trajectory, return_pair)

    def inverse(self, y: torch.Tensor, z: torch.Tensor) -> Pair:
        """Recover ``(y_0, z_0)`` from ``(y_N, z_N)`` (``forward(..., return_pair=True)``).

        Exact up to round-off (one evaluation per step, one more at ``t_N``).
        """
        y, z, _ = self._inverse((y, z, None))
        return y, z
