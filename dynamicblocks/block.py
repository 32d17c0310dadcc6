"""The dynamic block: a layer function integrated over a time grid."""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from .grid import GridLike, as_grid
from .tableaus import ButcherTableau, SchemeLike, get_tableau
from .weights import StageControl, resolve_stage_controls

__all__ = ["DynamicBlock"]


class _Stage(NamedTuple):
    """One stage of one step, fully resolved at construction."""

    increments: tuple[tuple[int, float], ...]  # (j, h * a_ij) for a_ij != 0
    control: int  # module that evaluates the stage (owns the buffers)
    blend: tuple[int, int, int, float] | None  # (slot, left, right, w) if interpolated


class _Step(NamedTuple):
    stages: tuple[_Stage, ...]
    update: tuple[tuple[int, float], ...]  # (i, h * b_i) for b_i != 0


def _combine(x: torch.Tensor, terms: tuple[tuple[int, float], ...], slopes: list) -> torch.Tensor:
    for j, coefficient in terms:
        x = torch.add(x, slopes[j], alpha=coefficient)
    return x


def _format_times(values: tuple[float, ...]) -> str:
    shown = [f"{v:g}" for v in values]
    if len(shown) > 7:
        shown = shown[:3] + ["..."] + shown[-2:]
    return "[" + ", ".join(shown) + "]"


class DynamicBlock(nn.Module):
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

    Shape:
        input ``(N, *)`` (e.g. ``(N, C, H, W)`` or ``(N, D)``), output the
        same; with ``return_trajectory=True`` the output is ``(len(t), N, *)``.
    """

    def __init__(
        self,
        layer: nn.Module,
        t: GridLike,
        scheme: SchemeLike = "euler",
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
    ) -> None:
        super().__init__()
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be an nn.Module, got {type(layer).__name__}")
        self._t = as_grid(t, name="t")
        self._t_theta = self._t[:-1] if t_theta is None else as_grid(t_theta, "t_theta", 1)
        self._tableau = get_tableau(scheme)
        controls = resolve_stage_controls(self._t, self._tableau.c, self._t_theta, interpolation)
        self._interpolation = interpolation
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in self._t_theta)
        self._param_names = tuple(name for name, _ in layer.named_parameters())
        self._steps, self._num_blends = self._plan(controls)

    def _plan(
        self, controls: tuple[tuple[StageControl, ...], ...]
    ) -> tuple[tuple[_Step, ...], int]:
        """Turn per-stage controls and the tableau into the forward loop's plan."""
        tableau = self._tableau
        slots: dict[StageControl, int] = {}
        steps = []
        for (t_k, t_next), stage_controls in zip(zip(self._t, self._t[1:]), controls):
            h = t_next - t_k
            stages = []
            for i, control in enumerate(stage_controls):
                increments = tuple((j, h * a) for j, a in enumerate(tableau.a[i]) if a != 0.0)
                blend = None
                if control.right is not None:
                    slot = slots.setdefault(control, len(slots))
                    blend = (slot, control.left, control.right, control.weight)
                stages.append(_Stage(increments, control.owner, blend))
            update = tuple((i, h * b) for i, b in enumerate(tableau.b) if b != 0.0)
            steps.append(_Step(tuple(stages), update))
        return tuple(steps), len(slots)

    @property
    def t(self) -> tuple[float, ...]:
        """The state grid."""
        return self._t

    @property
    def t_theta(self) -> tuple[float, ...]:
        """The control times."""
        return self._t_theta

    @property
    def tableau(self) -> ButcherTableau:
        """The integration scheme."""
        return self._tableau

    @property
    def interpolation(self) -> str:
        """How weights depend on time: ``"constant"`` or ``"linear"``."""
        return self._interpolation

    @property
    def num_steps(self) -> int:
        """Number of time steps ``len(t) - 1``."""
        return len(self._t) - 1

    def reset_parameters(self) -> None:
        """Re-initialise every control independently (each submodule's ``reset_parameters``)."""
        for layer in self.layers:
            for module in layer.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()

    def _blend(self, left: int, right: int, weight: float) -> dict[str, torch.Tensor]:
        pairs = zip(self.layers[left].parameters(), self.layers[right].parameters())
        return {name: torch.lerp(p, q, weight) for name, (p, q) in zip(self._param_names, pairs)}

    def forward(self, x: torch.Tensor, return_trajectory: bool = False) -> torch.Tensor:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``x``.

        Args:
            x: the initial state ``(N, *)``.
            return_trajectory: if true, return the states at every grid point
                stacked as ``(len(t), N, *)`` instead of only the final state.
        """
        trajectory = [x] if return_trajectory else None
        blends: list = [None] * self._num_blends
        layers = list(self.layers)  # plain indexing: ModuleList.__getitem__ costs per stage
        for step in self._steps:
            slopes: list[torch.Tensor] = []
            for stage in step.stages:
                y = _combine(x, stage.increments, slopes)
                if stage.blend is None:
                    slopes.append(layers[stage.control](y))
                else:
                    slot, left, right, weight = stage.blend
                    if blends[slot] is None:
                        blends[slot] = self._blend(left, right, weight)
                    slopes.append(functional_call(layers[stage.control], blends[slot], (y,)))
            x = _combine(x, step.update, slopes)
            if trajectory is not None:
                trajectory.append(x)
        return torch.stack(trajectory) if trajectory is not None else x

    def extra_repr(self) -> str:
        return (
            f"t={_format_times(self._t)} ({self.num_steps} steps), "
            f"scheme={self._tableau.name}, "
            f"t_theta={_format_times(self._t_theta)} ({len(self._t_theta)} controls), "
            f"interpolation={self._interpolation}"
        )
