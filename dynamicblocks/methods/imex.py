"""Implicit-explicit Runge-Kutta methods and :class:`IMEXBlock`.

The field splits as ``dx/dt = f(x; theta(t)) - L(t) x``: ``f`` is stepped
explicitly and the learnable linear operator ``L`` (positive semidefinite,
e.g. :class:`~dynamicblocks.nn.operators.ConvOperator`) implicitly, so the
stiff part costs one linear solve per stage instead of a step-size limit
(Haber, Lensink, Treister & Ruthotto, IMEXnet). The pairs are in
:mod:`dynamicblocks.imex_tableaus`.

An operator module is called as ``operator(r, s)`` and returns
``(I + s L)^{-1} r``. A stage needs ``L Y_j`` of earlier stages too; it is
read off the solve that made ``Y_j``: ``Y_j = r_j - s_j L Y_j`` gives
``-L Y_j = (Y_j - r_j) / s_j``, with no further operator application.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..core.block import TimeBlock
from ..core.fields import Evaluation
from ..grid import GridLike, as_grid
from ..imex_tableaus import IMEXTableau, get_imex_tableau
from .base import Method, State

__all__ = ["IMEXRungeKutta", "IMEXBlock"]

Terms = tuple[tuple[int, float], ...]


class _Stage(NamedTuple):
    explicit: Terms  # (j, h aE_ij) for f(Y_j)
    implicit: Terms  # (j, h aI_ij) for -L Y_j, j < i
    scale: float  # h aI_ii: Y_i = (I + scale L)^{-1} r_i (0 for the first stage)
    solve: Evaluation | None  # L at t_k + c_i h
    field: Evaluation | None  # f at t_k + c_i h, if a later stage uses f(Y_i)
    stiff: bool  # whether a later stage uses -L Y_i


class IMEXRungeKutta(Method):
    """The stiffly accurate IMEX Runge-Kutta method of an :class:`~dynamicblocks.IMEXTableau`."""

    fields = 2

    def __init__(self, tableau: IMEXTableau) -> None:
        self.tableau = tableau
        self.live_times = tuple(sorted(set(tableau.c)))

    @property
    def name(self) -> str:
        return self.tableau.name

    def describe(self) -> str:
        return f"scheme={self.tableau.name}"

    def plan(self, t: Sequence[float], resolve: Any) -> tuple[tuple[_Stage, ...], ...]:
        tableau, steps = self.tableau, []
        explicit, implicit, s = tableau.a_explicit, tableau.a_implicit, tableau.stages
        used = [any(explicit[j][i] != 0.0 for j in range(i + 1, s)) for i in range(s)]
        stiff = [any(implicit[j][i] != 0.0 for j in range(i + 1, s)) for i in range(s)]
        for k, (t_k, t_next) in enumerate(zip(t, t[1:])):
            h = t_next - t_k
            steps.append(
                tuple(
                    _Stage(
                        tuple((j, h * a) for j, a in enumerate(explicit[i][:i]) if a != 0.0),
                        tuple((j, h * a) for j, a in enumerate(implicit[i][:i]) if a != 0.0),
                        h * implicit[i][i],
                        resolve(k, c, field=1) if i else None,
                        resolve(k, c, field=0) if used[i] else None,
                        stiff[i],
                    )
                    for i, c in enumerate(tableau.c)
                )
            )
        return tuple(steps)

    def step(self, plan: tuple[_Stage, ...], state: State, evaluate: Any) -> State:
        (x,) = state
        slopes: dict[int, torch.Tensor] = {}  # f(Y_j)
        stiff: dict[int, torch.Tensor] = {}  # -L Y_j
        y = x
        for i, stage in enumerate(plan):
            if i:
                r = x
                for j, coefficient in stage.explicit:
                    r = torch.add(r, slopes[j], alpha=coefficient)
                for j, coefficient in stage.implicit:
                    r = torch.add(r, stiff[j], alpha=coefficient)
                y = evaluate(stage.solve, r, args=(stage.scale,))
                if stage.stiff:
                    stiff[i] = torch.sub(y, r).div_(stage.scale)
            if stage.field is not None:
                slopes[i] = evaluate(stage.field, y)
        return (y,)


class IMEXBlock(TimeBlock):
    """A block ``dx/dt = f(x; theta(t)) - L(t) x`` stepped implicit-explicitly.

    ``f`` (a copy of ``layer`` per control, in :attr:`layers`) is explicit;
    the linear operator ``L`` (a copy of ``operator`` per control, in
    :attr:`operators`) is implicit. With ``scheme="imex_euler"`` each step is
    IMEXnet's::

        x_{k+1} = (I + h_k L_k)^{-1} (x_k + h_k f_k(x_k))

    first order; ``"ars222"`` is second order with two solves per step. Any
    grid is accepted. Because the solves damp, the block stays bounded for
    ``h * lambda_max(L)`` far beyond explicit Euler's limit of 2.

    Weights in time: ``f`` and ``L`` at stage time ``t_k + c_i h_k`` use
    ``theta`` and ``L`` there, from the controls at ``t_theta`` (default one
    per step) with ``interpolation``, as in :class:`~dynamicblocks.DynamicBlock`.

    Args:
        layer: the prototype of ``f``, mapping a state to the same shape.
        operator: the prototype of ``L``: a module whose call
            ``operator(r, s)`` returns ``(I + s L)^{-1} r`` with gradients, e.g.
            :class:`~dynamicblocks.nn.operators.ConvOperator` (FFT solve) or
            :class:`~dynamicblocks.nn.operators.DenseOperator` (Cholesky).
        t: the state grid, strictly increasing, at least two points.
        scheme: a key of :data:`~dynamicblocks.imex_tableaus.IMEX_SCHEMES` or an
            :class:`~dynamicblocks.IMEXTableau`.
        t_theta: control times, strictly increasing, at least one point.
        interpolation: ``"constant"`` or ``"linear"``.
        memory: ``"full"`` or ``"checkpoint"`` (see :mod:`dynamicblocks.memory`).

    Raises:
        TypeError: if ``layer`` or ``operator`` is not an ``nn.Module``, or a
            grid is not a sequence of real numbers.
        ValueError: for an invalid grid, scheme, interpolation or memory mode,
            or a control time outside ``[t[0], t[-1]]`` that no stage uses.

    Shape:
        input ``(N, *)``, output the same; with ``return_trajectory=True``
        ``(len(t), N, *)``.
    """

    memory_modes = IMEXRungeKutta.memory_modes()
    field_attributes = ("layers", "operators")
    field_arguments = ("layer", "operator")

    def __init__(
        self,
        layer: nn.Module,
        operator: nn.Module,
        t: GridLike,
        scheme: str | IMEXTableau = "imex_euler",
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
        memory: str = "full",
    ) -> None:
        super().__init__()
        method = IMEXRungeKutta(get_imex_tableau(scheme))
        self._build(method, (layer, operator), t, t_theta, interpolation, memory)

    @property
    def tableau(self) -> IMEXTableau:
        """The IMEX pair."""
        return self._method.tableau

    def remanifest_(
        self, t: GridLike | None = None, scheme: str | IMEXTableau | None = None
    ) -> None:
        """Put the block on grid ``t`` and/or ``scheme`` in place, keeping ``theta(t)``, ``L(t)``.

        See :meth:`dynamicblocks.core.TimeBlock.remanifest_`.
        """
        t = self._t if t is None else as_grid(t, name="t")
        if scheme is not None:
            self._method = IMEXRungeKutta(get_imex_tableau(scheme))
        self._configure(t, self._t_theta, self._interpolation)

    def forward(self, x: torch.Tensor, return_trajectory: bool = False) -> torch.Tensor:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``x``.

        Raises:
            ValueError: if the layer or the operator returns another shape than
                its input's, naming the block and both shapes.
        """
        return self._run((x,), return_trajectory)
