"""Adams-Bashforth methods on any grid and :class:`MultistepBlock`.

An ``s``-step Adams-Bashforth method integrates the interpolant of the last
``s`` slopes over the next step::

    x_{k+1} = x_k + sum_{j=0..s-1} beta_kj f_{k-j}(x_{k-j}),
    beta_kj = integral over [t_k, t_{k+1}] of l_kj(t) dt

with ``l_kj`` the Lagrange polynomial of the times ``t_k, ..., t_{k-s+1}``
that is one at ``t_{k-j}``. On a non-uniform grid the weights change from step
to step; they are computed when the block is built (:func:`adams_bashforth_weights`),
never in the forward pass. One new field evaluation per step: the slopes of
the last ``s - 1`` steps are carried in the state, and nothing else.

The first ``s - 1`` steps have too few slopes behind them and are taken by a
Runge-Kutta method (:data:`DEFAULT_STARTS`), whose first stage gives the slope
the later steps need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..core.block import TimeBlock
from ..core.fields import Evaluation
from ..grid import GridLike, as_grid
from ..tableaus import ButcherTableau, SchemeLike, get_tableau
from .base import Method, State
from .runge_kutta import RungeKutta, _combine

__all__ = [
    "ADAMS_BASHFORTH",
    "DEFAULT_STARTS",
    "adams_bashforth_weights",
    "AdamsBashforth",
    "MultistepBlock",
]

ADAMS_BASHFORTH: dict[str, int] = {"ab1": 1, "ab2": 2, "ab3": 3, "ab4": 4}
"""The Adams-Bashforth schemes by name, and their orders (= numbers of steps)."""

DEFAULT_STARTS: dict[int, str | None] = {1: None, 2: "heun", 3: "rk3", 4: "rk4"}
"""The Runge-Kutta scheme of the start-up steps, by order: one of the same order."""


def adams_bashforth_weights(times: Sequence[float], t_next: float) -> tuple[float, ...]:
    """The weights ``beta_j`` of one variable-step Adams-Bashforth step.

    Args:
        times: ``t_k, t_{k-1}, ..., t_{k-s+1}``, the times of the slopes,
            newest first (distinct).
        t_next: ``t_{k+1}``.

    Returns:
        ``beta_0, ..., beta_{s-1}`` with
        ``x_{k+1} = x_k + sum_j beta_j f(t_{k-j})``; they include the step
        size (on ``t = 0, 1, 2, ...``: 1; 3/2, -1/2; 23/12, -16/12, 5/12;
        55/24, -59/24, 37/24, -9/24). Exact up to round-off: an ``s``-point
        Gauss-Legendre rule integrates the degree ``s - 1`` basis exactly.
    """
    times = [float(time) for time in times]
    nodes, weights = np.polynomial.legendre.leggauss(len(times))
    h = float(t_next) - times[0]
    points = times[0] + 0.5 * h * (nodes + 1.0)
    betas = []
    for j, t_j in enumerate(times):
        basis = np.ones_like(points)
        for m, t_m in enumerate(times):
            if m != j:
                basis *= (points - t_m) / (t_j - t_m)
        betas.append(float(0.5 * h * weights @ basis))
    return tuple(betas)


class _Start(NamedTuple):
    stages: tuple  # the Runge-Kutta step's stages (increments, evaluation)
    update: tuple  # (i, h b_i)


class _Step(NamedTuple):
    start: _Start | None  # a start-up step by Runge-Kutta, else an Adams-Bashforth step
    evaluation: Evaluation | None  # f_k at t_k (Adams-Bashforth steps)
    betas: tuple[float, ...]  # beta_k0, ..., beta_k,s-1 (Adams-Bashforth steps)


class AdamsBashforth(Method):
    """The ``order``-step Adams-Bashforth method, started by a Runge-Kutta scheme.

    The state is ``(x_k, f_{k-1}, ..., f_{k-order+1})``: the slopes of the last
    ``order - 1`` steps, ``None`` before they exist.
    """

    time_scalable = True

    def __init__(self, order: int, start: ButcherTableau | None) -> None:
        self.order = order
        self.start = start

    @property
    def name(self) -> str:
        return f"ab{self.order}"

    def describe(self) -> str:
        start = f", start={self.start.name}" if self.start is not None else ""
        return f"scheme={self.name}{start}"

    def plan(self, t: Sequence[float], resolve: Any) -> tuple[_Step, ...]:
        starts = self.order - 1
        steps: list[_Step] = []
        if starts:
            head = RungeKutta(self.start).plan(t[: starts + 1], resolve)
            steps += [_Step(_Start(step.stages, step.update), None, ()) for step in head]
        for k in range(starts, len(t) - 1):
            history = [t[k - j] for j in range(self.order)]
            betas = adams_bashforth_weights(history, t[k + 1])
            steps.append(_Step(None, resolve(k, 0.0), betas))
        return tuple(steps[: len(t) - 1])

    def step(self, plan: _Step, state: State, evaluate: Any) -> State:
        x, *history = state
        if plan.start is not None:
            slopes: list[torch.Tensor] = []
            for stage in plan.start.stages:
                slopes.append(evaluate(stage.evaluation, _combine(x, stage.increments, slopes)))
            slope, x_next = slopes[0], _combine(x, plan.start.update, slopes)
        else:
            slope = evaluate(plan.evaluation, x)
            x_next = torch.add(x, slope, alpha=plan.betas[0])
            for past, beta in zip(history, plan.betas[1:]):
                x_next = torch.add(x_next, past, alpha=beta)
        return (x_next, *([slope, *history][: self.order - 1]))


def _start_tableau(order: int, start: SchemeLike | None) -> ButcherTableau | None:
    if order == 1:
        return None
    return get_tableau(DEFAULT_STARTS[order] if start is None else start)


class MultistepBlock(TimeBlock):
    """A block ``dx/dt = f(x; theta(t))`` stepped by an Adams-Bashforth method.

    ``scheme="ab<s>"`` (``s = 1..4``) takes one field evaluation per step and
    keeps the last ``s - 1`` slopes; on any grid (the variable-step weights
    are computed here, see :func:`adams_bashforth_weights`) its error is
    ``O(h^s)``. The first ``s - 1`` steps are taken by the Runge-Kutta scheme
    ``start`` (default: one of order ``s``, :data:`DEFAULT_STARTS`), its stages
    using the weights in time of the steps they cover; a start of order at
    least ``s - 1`` keeps the order ``s``. ``"ab1"`` is forward Euler.

    Weights in time: the step from ``t_k`` evaluates ``f`` with
    ``theta(t_k)`` (controls at ``t_theta``, default one per step, as in
    :class:`~dynamicblocks.DynamicBlock`); the slopes it reuses keep the
    weights they were evaluated with.

    Args:
        layer: the prototype layer function ``f``, mapping a state to the same
            shape; the block holds ``len(t_theta)`` deep copies in
            :attr:`layers`.
        t: the state grid, strictly increasing, at least two points.
        scheme: ``"ab1"``, ``"ab2"``, ``"ab3"`` or ``"ab4"``.
        start: the explicit Runge-Kutta scheme (name or
            :class:`~dynamicblocks.ButcherTableau`) of the start-up steps
            (default: by order, :data:`DEFAULT_STARTS`; ignored for ``"ab1"``).
        t_theta: control times, strictly increasing, at least one point.
        interpolation: ``"constant"`` or ``"linear"``.
        memory: ``"full"`` or ``"checkpoint"`` (see :mod:`dynamicblocks.memory`;
            a checkpoint stores the state, i.e. ``x`` and ``s - 1`` slopes).

    Raises:
        TypeError: if ``layer`` is not an ``nn.Module``, or a grid is not a
            sequence of real numbers.
        ValueError: for an invalid grid, scheme, start, interpolation or
            memory mode, or a control time outside ``[t[0], t[-1]]`` that no
            step uses.

    Shape:
        input ``(N, *)``, output the same; with ``return_trajectory=True``
        ``(len(t), N, *)``.
    """

    memory_modes = AdamsBashforth.memory_modes()

    def __init__(
        self,
        layer: nn.Module,
        t: GridLike,
        scheme: str = "ab2",
        start: SchemeLike | None = None,
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
        memory: str = "full",
    ) -> None:
        super().__init__()
        self._build(_method(scheme, start), (layer,), t, t_theta, interpolation, memory)

    def remanifest_(
        self,
        t: GridLike | None = None,
        scheme: str | None = None,
        start: SchemeLike | None = None,
    ) -> None:
        """Put the block on grid ``t``, ``scheme`` and/or ``start`` in place, keeping ``theta(t)``.

        See :meth:`dynamicblocks.core.TimeBlock.remanifest_`; a ``scheme``
        without ``start`` takes the default start of its order.
        """
        t = self._t if t is None else as_grid(t, name="t")
        if scheme is not None or start is not None:
            method = self._method
            scheme = method.name if scheme is None else scheme
            if start is None and scheme == method.name:
                start = method.start
            self._method = _method(scheme, start)
        self._configure(t, self._t_theta, self._interpolation)

    def forward(self, x: torch.Tensor, return_trajectory: bool = False) -> torch.Tensor:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``x``.

        Raises:
            ValueError: if the layer returns a tensor of another shape than its
                input's (or no tensor), naming the block and both shapes.
        """
        return self._run((x, *([None] * (self._method.order - 1))), return_trajectory)


def _method(scheme: str, start: SchemeLike | None) -> AdamsBashforth:
    if scheme not in ADAMS_BASHFORTH:
        raise ValueError(f"scheme must be one of {tuple(ADAMS_BASHFORTH)}, got {scheme!r}")
    order = ADAMS_BASHFORTH[scheme]
    return AdamsBashforth(order, _start_tableau(order, start))
