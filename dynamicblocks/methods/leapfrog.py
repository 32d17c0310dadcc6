"""The leapfrog method for ``y'' = F(y)`` and :class:`LeapfrogBlock`.

References:
    L. Ruthotto, E. Haber, "Deep neural networks motivated by partial
    differential equations", J. Math. Imaging Vis. 62 (2020) 352-364,
    arXiv:1804.04272 (2018).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from .._validate import check_tensor, one_of
from ..core.block import TimeBlock
from ..core.fields import Evaluation
from ..grid import GridLike
from ..memory.reversible import reversible_solve
from .base import Method, State

__all__ = ["Leapfrog", "LeapfrogBlock", "STARTS", "leapfrog_reversible"]

STARTS = ("rest", "taylor")
"""Initial conditions of :class:`LeapfrogBlock` when no previous state is given."""

Pair = tuple[torch.Tensor, torch.Tensor]


class _Step(NamedTuple):
    ratio: float  # h_k / h_{k-1}
    kick: float  # h_k (h_k + h_{k-1}) / 2
    first: float  # the kick's factor when there is no previous state (the start)
    force: Evaluation  # F_k at t_k


class Leapfrog(Method):
    """``y_{k+1} = y_k + (h_k / h_{k-1}) (y_k - y_{k-1}) + h_k (h_k + h_{k-1}) / 2 F_k(y_k)``.

    The state is ``(y_k, y_{k-1})``; ``y_{-1}`` may be missing (``None``),
    and then the first step is ``y_1 = y_0 + c h_0^2 F_0(y_0)`` with ``c = 1``
    for ``start="rest"`` and ``1/2`` for ``"taylor"``. Its inverse evaluates
    ``F_k(y_k)`` as the step does, so :mod:`dynamicblocks.memory.reversible`
    applies.
    """

    def __init__(self, start: str = "rest") -> None:
        self.start = one_of("start", start, STARTS)

    @property
    def name(self) -> str:
        return "leapfrog"

    def describe(self) -> str:
        return f"start={self.start}"

    def plan(self, t: Sequence[float], resolve: Any) -> tuple[_Step, ...]:
        h = [t_next - t_k for t_k, t_next in zip(t, t[1:])]
        first = 1.0 if self.start == "rest" else 0.5
        return tuple(
            _Step(h_k / before, h_k * (h_k + before) / 2, first, resolve(k, 0.0))
            for k, (h_k, before) in enumerate(zip(h, [h[0], *h[:-1]]))
        )

    def step(self, plan: _Step, state: State, evaluate: Any) -> State:
        y, y_prev = state
        force = evaluate(plan.force, y)
        if y_prev is None:
            return torch.add(y, force, alpha=plan.first * plan.kick), y
        y_next = torch.add(y, torch.sub(y, y_prev), alpha=plan.ratio)
        return torch.add(y_next, force, alpha=plan.kick), y

    def inverse_step(self, plan: _Step, state: State, evaluate: Any) -> State:
        y_next, y = state
        force = evaluate(plan.force, y)
        drift = torch.sub(torch.sub(y_next, y), force, alpha=plan.kick)
        return y, torch.sub(y, drift, alpha=1.0 / plan.ratio)


class LeapfrogBlock(TimeBlock):
    """Second-order (hyperbolic) block ``y'' = F(y)`` by the leapfrog scheme.

    On a uniform grid with step ``h`` this is the hyperbolic network of
    Ruthotto & Haber (2018)::

        y_{k+1} = 2 y_k - y_{k-1} + h^2 F_k(y_k),    k = 0, ..., len(t) - 2

    with ``F_k`` a copy of ``layer`` (e.g. :class:`~dynamicblocks.DoubleSymLayer`,
    ``-K^T act(N(K y + b)) - b_t``, whose minus sign makes the dynamics a
    stable wave-like equation). Any grid is accepted: with
    ``h_k = t[k+1] - t[k]`` the block uses the standard variable-step
    central difference for ``y''``::

        y_{k+1} = y_k + (h_k / h_{k-1}) (y_k - y_{k-1}) + h_k (h_k + h_{k-1}) / 2 * F_k(y_k)

    i.e. the velocity ``v_{k+1/2} = (y_{k+1} - y_k) / h_k`` is kicked by
    ``F_k(y_k)`` over the dual cell ``(h_{k-1} + h_k) / 2``. On a uniform grid
    it reduces to the formula above (up to round-off); its error is
    ``O(h^2)`` on uniform and smoothly graded grids, only ``O(max h)`` on
    grids whose steps jump. The step before the grid is taken as
    ``h_{-1} = h_0``.

    Initial condition: ``y_{-1}``, the state at ``t_0 - h_0``, is

    * ``x_prev`` if given to :meth:`forward`;
    * else, for ``start="rest"`` (default, Ruthotto & Haber):
      ``y_{-1} = y_0`` (zero velocity at ``t_0 - h_0 / 2``), so
      ``y_1 = y_0 + h_0^2 F_0(y_0)``. Read as ``y(t_0) = y_0, y'(t_0) = 0``
      this start is only first-order accurate: the scheme is second order,
      but the start gives the solution a velocity of about
      ``(h_0 / 2) F_0(y_0)`` at ``t_0``, an ``O(h)`` error that persists (for
      ``F(y) = -w^2 y``: ``y_k = y_0 cos(theta (k + 1/2)) / cos(theta / 2)``
      with ``cos(theta) = 1 - h^2 w^2 / 2``);
    * else, for ``start="taylor"``: ``y_1 = y_0 + (h_0^2 / 2) F_0(y_0)`` (the
      Taylor step of ``y'(t_0) = 0``, equivalently
      ``y_{-1} = y_0 + (h_0^2 / 2) F_0(y_0)``), second-order accurate overall.

    Inverse: the scheme is reversible in time. :meth:`forward` with
    ``return_pair=True`` returns ``(y_N, y_{N-1})``; :meth:`inverse` takes
    that pair and returns ``(y_0, y_{-1})`` by
    ``y_{k-1} = y_k - (y_{k+1} - y_k - h_k (h_k + h_{k-1}) / 2 F_k(y_k)) h_{k-1} / h_k``
    (uniform: ``y_{k-1} = 2 y_k - y_{k+1} + h^2 F_k(y_k)``), and
    ``forward(y_0, x_prev=y_{-1}, return_pair=True)`` maps it back. For
    ``start="rest"``, ``y_{-1} = y_0``; for ``"taylor"`` it is the virtual state
    above. As for :class:`HamiltonianBlock`, call ``inverse`` in eval mode if
    ``F`` holds BatchNorm.

    Weights: ``F_k`` uses ``theta(t_k)`` from the controls at ``t_theta``
    (default ``t[:-1]``), ``"constant"`` or ``"linear"`` as in
    :class:`HamiltonianBlock`.

    Args:
        layer: prototype of ``F``, a module mapping a state to the same shape;
            the block holds ``len(t_theta)`` deep copies in :attr:`layers`.
        t: the state grid, strictly increasing, at least two points.
        t_theta: control times, strictly increasing, at least one point.
        interpolation: ``"constant"`` or ``"linear"``.
        start: ``"rest"`` or ``"taylor"``, the initial condition when no
            ``x_prev`` is given.
        memory: ``"full"``, ``"checkpoint"`` or ``"reversible"`` (see
            :mod:`dynamicblocks.memory`).

    Raises:
        TypeError: if ``layer`` is not an ``nn.Module``, or a grid is not a
            sequence of real numbers.
        ValueError: for an invalid grid, interpolation, start or memory
            mode, or if a control time of ``t_theta`` outside ``[t[0], t[-1]]``
            is used by no step (each step ``k`` evaluates ``theta(t_k)``; its
            weights would never get a gradient; see
            :func:`dynamicblocks.weights.check_controls_used`), e.g.
            ``t_theta=[5, 6]`` on ``t=[0, 1]`` (6 is never used).

    Shape:
        input ``(N, *)``, output the same; ``return_pair`` gives two such
        tensors, ``return_trajectory`` ``(len(t), N, *)`` (``y_0, ..., y_N``).
    """

    memory_modes = Leapfrog.memory_modes()
    fixed_scheme = "leapfrog"

    def __init__(
        self,
        layer: nn.Module,
        t: GridLike,
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
        start: str = "rest",
        memory: str = "full",
    ) -> None:
        super().__init__()
        self._build(Leapfrog(start), (layer,), t, t_theta, interpolation, memory)

    @property
    def start(self) -> str:
        """The initial condition without ``x_prev``: ``"rest"`` or ``"taylor"``."""
        return self._method.start

    def forward(
        self,
        x: torch.Tensor,
        x_prev: torch.Tensor | None = None,
        *,
        return_pair: bool = False,
        return_trajectory: bool = False,
    ) -> torch.Tensor | Pair:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``y_0 = x``.

        Args:
            x: the initial state ``y_0``, shape ``(N, *)``.
            x_prev: the state ``y_{-1}`` at ``t_0 - h_0`` (default: from
                :attr:`start`).
            return_pair: if true, return ``(y_N, y_{N-1})``, the input of
                :meth:`inverse` (and of a following block's ``x``, ``x_prev``
                when it continues on the same step size).
            return_trajectory: if true, return ``y_0, ..., y_N`` stacked as
                ``(len(t), N, *)``.

        Raises:
            ValueError: if both ``return_pair`` and ``return_trajectory`` are
                set, or if the layer returns a tensor of another shape than its
                input's, naming the block, the layer and both shapes (in every
                memory mode).
        """
        return self._run((x, x_prev), return_trajectory, return_pair)

    def inverse(self, y_last: torch.Tensor, y_before_last: torch.Tensor) -> Pair:
        """Recover ``(y_0, y_{-1})`` from ``(y_N, y_{N-1})`` (``forward(..., return_pair=True)``).

        Exact up to round-off; see the class docstring for the formula.
        """
        return self._inverse((y_last, y_before_last))


def leapfrog_reversible(
    block: LeapfrogBlock,
    x: torch.Tensor,
    x_prev: torch.Tensor | None = None,
) -> Pair:
    """``(y_N, y_{N-1})`` of ``block`` from ``y_0 = x``, back-propagated reversibly.

    The same values as ``block(x, x_prev, return_pair=True)``, but autograd
    stores only the output pair: backward reconstructs ``y_{k-1}`` from
    ``(y_{k+1}, y_k)`` with the inverse leapfrog step
    ``y_{k-1} = y_k - (y_{k+1} - y_k - h_k (h_k + h_{k-1}) / 2 F_k(y_k)) h_{k-1} / h_k``
    down to ``y_0`` (the first step, without ``x_prev``, is the ``start``
    step ``y_1 = y_0 + c h_0^2 F_0(y_0)``, ``c = 1`` for ``"rest"``, ``1/2``
    for ``"taylor"``, and needs no reconstruction), and back-propagates
    through each step, giving gradients for ``x``, ``x_prev`` (when given) and
    every parameter of ``block``. They equal the stored-activation gradients
    up to the round-off of the reconstruction (see the module docstring).

    Args:
        block: a :class:`~dynamicblocks.LeapfrogBlock` (its steps and field are
            used; its ``forward``, which calls this function, is not).
        x: the initial state ``y_0``.
        x_prev: the state ``y_{-1}``, the same shape as ``x``, or ``None``
            for the block's ``start``.

    Returns:
        ``(y_N, y_{N-1})``.

    Raises:
        TypeError: if ``block`` is not a LeapfrogBlock, ``x`` is not a tensor
            or ``x_prev`` is neither a tensor nor ``None``.
        ValueError: if ``x_prev`` has another shape than ``x``.
    """
    if not isinstance(block, LeapfrogBlock):
        raise TypeError(f"block must be a LeapfrogBlock, got {type(block).__name__}")
    check_tensor("x", x)
    if x_prev is not None:
        check_tensor("x_prev", x_prev)
        if x_prev.shape != x.shape:
            raise ValueError(
                f"x_prev must have the shape of x, {tuple(x.shape)}, got {tuple(x_prev.shape)}"
            )
    return reversible_solve(block, (x, x_prev))
