"""Explicit Runge-Kutta methods (any Butcher tableau) and :class:`DynamicBlock`.

One method serves every explicit tableau, as in torchdiffeq: the plan holds,
per step and stage, the nonzero ``h a_ij`` and ``h b_i`` and the resolved
evaluation; the step only adds and evaluates. Its adjoint step (for
``memory="adjoint"``) integrates the adjoint system backwards over the step
with the same tableau.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..core.block import TimeBlock
from ..core.fields import Evaluation, Fields
from ..grid import GridLike, as_grid
from ..tableaus import ButcherTableau, SchemeLike, get_tableau
from .base import Method, State

__all__ = ["RungeKutta", "DynamicBlock"]

Terms = tuple[tuple[int, float], ...]


class _Stage(NamedTuple):
    increments: Terms  # (j, h * a_ij) for a_ij != 0
    evaluation: Evaluation


class _Step(NamedTuple):
    stages: tuple[_Stage, ...]
    update: Terms  # (i, h * b_i) for b_i != 0
    reversed: tuple[Evaluation, ...]  # the adjoint's stages, at t_{k+1} - c_i h
    weights: tuple[float, ...]  # h * b_i for every stage, zeros included (the adjoint's)


def _combine(x: torch.Tensor, terms: Terms, slopes: list) -> torch.Tensor:
    for j, coefficient in terms:
        x = torch.add(x, slopes[j], alpha=coefficient)
    return x


def _live_stages(tableau: ButcherTableau) -> list[bool]:
    """Per stage, whether its value reaches the step's result.

    Stage ``i`` is live if ``b_i != 0`` or a live later stage ``j`` has
    ``a_ji != 0``.
    """
    stages = tableau.stages
    live = [b != 0.0 for b in tableau.b]
    for i in reversed(range(stages)):
        live[i] = live[i] or any(
            live[j] and i < len(tableau.a[j]) and tableau.a[j][i] != 0.0
            for j in range(i + 1, stages)
        )
    return live


def live_stage_times(tableau: ButcherTableau) -> tuple[float, ...]:
    """The ``c_i`` of the stages whose value reaches the step's result.

    The weights of any other stage would get no gradient (see
    :func:`_live_stages`).
    """
    return tuple(c for c, keep in zip(tableau.c, _live_stages(tableau)) if keep)


class RungeKutta(Method):
    """The explicit Runge-Kutta method of a Butcher tableau."""

    time_scalable = True
    quadrature = True  # stage i of a step weighs h b_i

    def __init__(self, tableau: ButcherTableau) -> None:
        self.tableau = tableau
        self.live_times = live_stage_times(tableau)

    @property
    def name(self) -> str:
        return self.tableau.name

    def describe(self) -> str:
        return f"scheme={self.tableau.name}"

    def plan(self, t: Sequence[float], resolve: Any) -> tuple[_Step, ...]:
        """Per step, the live stages (trailing dead ones, like an FSAL stage, are left out)."""
        tableau, steps = self.tableau, []
        live = _live_stages(tableau)
        count = max(i for i, keep in enumerate(live) if keep) + 1
        times = tableau.c[:count]
        for k, (t_k, t_next) in enumerate(zip(t, t[1:])):
            h = t_next - t_k
            stages = tuple(
                _Stage(
                    tuple((j, h * a) for j, a in enumerate(tableau.a[i]) if a != 0.0),
                    resolve(k, c),
                )
                for i, c in enumerate(times)
            )
            update = tuple((i, h * b) for i, b in enumerate(tableau.b) if b != 0.0)
            reversed_stages = tuple(resolve(k, 1.0 - c, group=1) for c in times)
            weights = tuple(h * b for b in tableau.b[:count])
            steps.append(_Step(stages, update, reversed_stages, weights))
        return tuple(steps)

    def step(self, plan: _Step, state: State, evaluate: Any) -> State:
        (x,) = state
        slopes: list[torch.Tensor] = []
        for stage, weight in zip(plan.stages, plan.weights):
            xi = _combine(x, stage.increments, slopes)
            slopes.append(evaluate(stage.evaluation, xi, weight=weight))
        return (_combine(x, plan.update, slopes),)

    def adjoint_step(
        self, plan: _Step, state: State, cotangent: State, fields: Fields, grads: dict
    ) -> tuple[State, State]:
        """Step ``x`` and its adjoint ``a`` back over the step (the tableau, step ``-h``)."""
        (x,), (a,) = state, cotangent
        fs: list[torch.Tensor] = []
        vs: list[torch.Tensor] = []
        for stage, evaluation, weight in zip(plan.stages, plan.reversed, plan.weights):
            xi, ai = x, a
            for j, increment in stage.increments:
                xi = torch.sub(xi, fs[j], alpha=increment)
                ai = torch.add(ai, vs[j], alpha=increment)
            f, v = fields.vjp(evaluation, xi, ai, grads, weight)
            fs.append(f)
            vs.append(v)
        for i, weight in plan.update:
            x = torch.sub(x, fs[i], alpha=weight)
            a = torch.add(a, vs[i], alpha=weight)
        return (x,), (a,)


class DynamicBlock(TimeBlock):
    """A residual block read as an ODE ``dx/dt = f(x; theta(t))`` on a time grid.

    The block integrates the layer function ``f`` from ``t[0]`` to ``t[-1]``
    with an explicit Runge-Kutta scheme, one step per grid interval (the grid
    may be non-uniform). The weights ``theta(t)`` live at control times
    ``t_theta``: the block holds one copy of ``layer`` per control time in
    :attr:`layers`. See :mod:`dynamicblocks.weights` for the interpolation
    rules (piecewise constant with the open-set convention, or linear).

    With one control per step (the default), ``scheme="euler"`` and ``h = 1``
    the block is exactly a stack of residual units ``x = x + f_k(x)``; with a
    single control it shares its weights across depth (Neural-ODE style).

    Every stage's step size, coefficients and control are resolved here, at
    construction: the forward loop does no host synchronisation and compiles
    with ``torch.compile(fullgraph=True)``.

    Args:
        layer: the prototype layer function, any module mapping a tensor to a
            tensor of the same shape. The block holds ``len(t_theta)``
            independent deep copies of it (same initial values, not
            re-initialised; call :meth:`reset_parameters` for independent
            initialisation). The prototype itself is not registered.
        t: the state grid, strictly increasing, at least two points.
        scheme: a name from :data:`dynamicblocks.TABLEAUS` or a
            :class:`~dynamicblocks.ButcherTableau`.
        t_theta: control times, strictly increasing, at least one point.
            Default: ``t[:-1]`` (one control per step, a ResNet).
        interpolation: ``"constant"`` or ``"linear"``.
        memory: ``"full"`` (default: autograd stores every stage),
            ``"checkpoint"`` (store the input of every segment of
            ``ceil(sqrt(N))`` steps, recompute the segment in backward) or
            ``"adjoint"`` (store nothing, solve the adjoint equation
            backwards); see :mod:`dynamicblocks.memory`.

    Raises:
        TypeError: if ``layer`` is not an ``nn.Module``, or a grid is not a
            sequence of real numbers.
        ValueError: for an invalid grid, scheme, interpolation or memory mode,
            or if a control time of ``t_theta`` outside ``[t[0], t[-1]]`` is
            used by no stage of the grid, scheme and interpolation (its
            weights would never get a gradient; see
            :func:`dynamicblocks.weights.check_controls_used`), e.g.
            ``t_theta=[5, 6]`` on ``t=[0, 1]`` (6 is never used).

    Shape:
        input ``(N, *)`` (e.g. ``(N, C, H, W)`` or ``(N, D)``), output the
        same; with ``return_trajectory=True`` the output is ``(len(t), N, *)``.
    """

    memory_modes = RungeKutta.memory_modes()

    def __init__(
        self,
        layer: nn.Module,
        t: GridLike,
        scheme: SchemeLike = "euler",
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
        memory: str = "full",
    ) -> None:
        super().__init__()
        self._build(RungeKutta(get_tableau(scheme)), (layer,), t, t_theta, interpolation, memory)

    @property
    def tableau(self) -> ButcherTableau:
        """The integration scheme."""
        return self._method.tableau

    def remanifest_(self, t: GridLike | None = None, scheme: SchemeLike | None = None) -> None:
        """Put the block on grid ``t`` and/or ``scheme`` in place, keeping ``theta(t)``.

        The controls (modules, control times, interpolation) are untouched, so
        the weights at the new stage times come from the same ``theta(t)``:
        looked up for ``"constant"``, interpolated for ``"linear"``. With the
        same grid and scheme the block computes exactly the same function.

        Unlike the constructor, this does not require the new grid and scheme
        to use every control (a coarser grid for evaluation may skip some);
        the weights of a control no stage uses get no gradient.

        Args:
            t: the new state grid (default: unchanged).
            scheme: the new scheme (default: unchanged).
        """
        t = self._t if t is None else as_grid(t, name="t")
        if scheme is not None:
            self._method = RungeKutta(get_tableau(scheme))
        self._configure(t, self._t_theta, self._interpolation)

    def forward(self, x: torch.Tensor, return_trajectory: bool = False) -> torch.Tensor:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``x``.

        Args:
            x: the initial state ``(N, *)``.
            return_trajectory: if true, return the states at every grid point
                stacked as ``(len(t), N, *)`` instead of only the final state.

        Raises:
            ValueError: if the layer returns a tensor of another shape than its
                input's (or no tensor), naming the block, the layer and both
                shapes (in every memory mode), rather than broadcasting it.
        """
        return self._run((x,), return_trajectory)
