"""The dynamic block: a layer function integrated over a time grid."""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from ._validate import check_layer_output
from .adjoint import adjoint_integrate
from .grid import GridLike, as_grid, refine_grid
from .projection import basis_matrix, projection_matrix
from .tableaus import ButcherTableau, SchemeLike, get_tableau
from .timeblock import TimeBlock, blend_parameters, check_module, format_times
from .weights import (
    StageControl,
    check_controls_used,
    check_interpolation,
    resolve_stage_controls,
)

__all__ = ["DynamicBlock"]


class _Stage(NamedTuple):
    """One stage of one step, fully resolved at construction."""

    increments: tuple[tuple[int, float], ...]  # (j, h * a_ij) for a_ij != 0
    control: int  # module that evaluates the stage (owns the buffers)
    blend: int | None  # slot of the interpolated parameters, if interpolated


class _Step(NamedTuple):
    stages: tuple[_Stage, ...]
    update: tuple[tuple[int, float], ...]  # (i, h * b_i) for b_i != 0


def _combine(x: torch.Tensor, terms: tuple[tuple[int, float], ...], slopes: list) -> torch.Tensor:
    for j, coefficient in terms:
        x = torch.add(x, slopes[j], alpha=coefficient)
    return x


def _live_stage_times(tableau: ButcherTableau) -> tuple[float, ...]:
    """The ``c_i`` of the stages whose value reaches the step's result.

    Stage ``i`` is live if ``b_i != 0`` or a live later stage ``j`` has
    ``a_ji != 0``; the weights of any other stage would get no gradient.
    """
    stages = tableau.stages
    live = [b != 0.0 for b in tableau.b]
    for i in reversed(range(stages)):
        live[i] = live[i] or any(
            live[j] and i < len(tableau.a[j]) and tableau.a[j][i] != 0.0
            for j in range(i + 1, stages)
        )
    return tuple(c for c, keep in zip(tableau.c, live) if keep)


def _average_modules(modules: list[nn.Module]) -> nn.Module:
    """A copy of ``modules[0]`` whose floating-point state is the mean over ``modules``."""
    average = copy.deepcopy(modules[0])
    if len(modules) > 1:
        states = [module.state_dict() for module in modules]
        with torch.no_grad():
            for key, value in average.state_dict().items():
                if value.is_floating_point():
                    value.copy_(torch.stack([state[key] for state in states]).mean(0))
    return average


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

    memory_modes = ("full", "checkpoint", "adjoint")

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
        check_module("layer", layer)
        self.memory = memory
        t = as_grid(t, name="t")
        t_theta = t[:-1] if t_theta is None else as_grid(t_theta, "t_theta", 1)
        tableau = get_tableau(scheme)
        check_interpolation(interpolation)
        check_controls_used(
            type(self).__name__, t, _live_stage_times(tableau), t_theta, interpolation
        )
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in t_theta)
        self._param_names = tuple(name for name, _ in layer.named_parameters())
        self._configure(t, tableau, t_theta, interpolation)

    def _configure(
        self,
        t: tuple[float, ...],
        tableau: ButcherTableau,
        t_theta: tuple[float, ...],
        interpolation: str,
    ) -> None:
        """Set grid, scheme and controls (validated) and plan the forward loop."""
        controls = resolve_stage_controls(t, tableau.c, t_theta, interpolation)
        self._t, self._tableau = t, tableau
        self._t_theta, self._interpolation = t_theta, interpolation
        self._steps, self._blends = self._plan(controls)
        # the adjoint's stages run backwards, at t_{k+1} - c_i h = t_k + (1 - c_i) h
        reversed_stages = tuple(1.0 - c for c in tableau.c)
        self._reverse_controls = resolve_stage_controls(t, reversed_stages, t_theta, interpolation)

    def _plan(
        self, controls: tuple[tuple[StageControl, ...], ...]
    ) -> tuple[tuple[_Step, ...], tuple[StageControl, ...]]:
        """The forward loop's plan, and the interpolated controls by slot."""
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
                    blend = slots.setdefault(control, len(slots))
                stages.append(_Stage(increments, control.owner, blend))
            update = tuple((i, h * b) for i, b in enumerate(tableau.b) if b != 0.0)
            steps.append(_Step(tuple(stages), update))
        return tuple(steps), tuple(slots)

    @property
    def tableau(self) -> ButcherTableau:
        """The integration scheme."""
        return self._tableau

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
        tableau = self._tableau if scheme is None else get_tableau(scheme)
        self._configure(t, tableau, self._t_theta, self._interpolation)

    def remanifest(
        self, t: GridLike | None = None, scheme: SchemeLike | None = None
    ) -> DynamicBlock:
        """A new block on grid ``t`` and/or ``scheme`` with a copy of the same ``theta(t)``.

        This block is left unchanged; see :meth:`remanifest_` for the rules.
        """
        block = copy.deepcopy(self)
        block.remanifest_(t, scheme)
        return block

    def refine_(self) -> dict[nn.Parameter, tuple[nn.Parameter, ...]]:
        """Halve every step and (about) double the controls, in place, keeping ``theta(t)``.

        The grid becomes :func:`~dynamicblocks.refine_grid` of the old one. A
        new control is inserted after every control ``j``, halfway to the next
        control time:

        * ``"constant"``: the new control is a copy of control ``j`` (also
          after the last control, halfway to ``t[-1]``, if that lies beyond it),
          so with one control per step the refined block again has one per step;
        * ``"linear"``: the new control is the average of controls ``j`` and
          ``j + 1`` (none after the last), which is ``theta`` at the midpoint.

        Either way ``theta(t)`` is exactly the same function, so the block's
        output changes only by the discretisation error of the finer grid.
        Buffers (BatchNorm running statistics) are copied, or averaged where
        floating point, alike. The old control modules stay in :attr:`layers`
        as the same objects, so their parameters keep their identity (and
        their optimiser state).

        Returns:
            For every new parameter, the parameters it was made from: pass it
            to :func:`dynamicblocks.carry_optimizer_state` to give the new
            parameters their sources' momentum.
        """
        old, knots, t_end = list(self.layers), self._t_theta, self._t[-1]
        layers, times = [], []
        sources: dict[nn.Parameter, tuple[nn.Parameter, ...]] = {}
        for j, (layer, time) in enumerate(zip(old, knots)):
            layers.append(layer)
            times.append(time)
            if j + 1 < len(knots):
                following, partners = knots[j + 1], (j, j + 1)
            elif self._interpolation == "constant" and t_end > time:
                following, partners = t_end, (j,)
            else:
                continue
            if self._interpolation == "constant":
                partners = partners[:1]
            new = _average_modules([old[i] for i in partners])
            layers.append(new)
            times.append(0.5 * (time + following))
            for name, param in new.named_parameters():
                sources[param] = tuple(old[i].get_parameter(name) for i in partners)
        self.layers = nn.ModuleList(layers)
        t_theta = as_grid(times, "t_theta", 1)
        self._configure(refine_grid(self._t), self._tableau, t_theta, self._interpolation)
        return sources

    def project(self, t_theta: GridLike, interpolation: str | None = None) -> DynamicBlock:
        """A new block whose ``theta(t)`` is the L2 projection onto other (fewer) controls.

        The new controls at ``t_theta`` with ``interpolation`` (default: this
        block's) minimise ``integral over [t[0], t[-1]] of |theta(t) - theta_new(t)|^2
        dt`` for every parameter entry (see :func:`dynamicblocks.projection_matrix`);
        a ``theta(t)`` that already lies in the new space is returned exactly.
        Buffers are copied from the old control that owns the new control time
        (at or left of it for ``"constant"``, the nearer one for ``"linear"``).
        The grid and scheme are unchanged; this block is left unchanged.

        Raises:
            ValueError: if ``t_theta`` has more points than the block has
                controls, a new control has no support on the interval, or a
                new control outside the grid's range is used by no stage (as in
                the constructor).
        """
        t_theta = as_grid(t_theta, "t_theta", 1)
        interpolation = check_interpolation(interpolation or self._interpolation)
        if len(t_theta) > len(self._t_theta):
            raise ValueError(
                f"t_theta has {len(t_theta)} control times but the block has "
                f"{len(self._t_theta)} controls; a projection goes to fewer (or as many)"
            )
        interval = (self._t[0], self._t[-1])
        matrix = projection_matrix(
            interval, self._t_theta, self._interpolation, t_theta, interpolation
        )
        check_controls_used(
            type(self).__name__, self._t, _live_stage_times(self._tableau), t_theta, interpolation
        )
        owners = basis_matrix(t_theta, self._t_theta, self._interpolation).argmax(dim=1)
        layers = [copy.deepcopy(self.layers[int(owner)]) for owner in owners]
        with torch.no_grad():
            for name in self._param_names:
                old = torch.stack([layer.get_parameter(name).double() for layer in self.layers])
                new = (matrix @ old.flatten(1)).view(len(layers), *old.shape[1:])
                for layer, value in zip(layers, new):
                    layer.get_parameter(name).copy_(value)
        block = copy.deepcopy(self, memo={id(self.layers): nn.ModuleList()})  # skip old layers
        block.layers = nn.ModuleList(layers)
        block._configure(self._t, self._tableau, t_theta, interpolation)
        return block

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
        if self._memory == "adjoint" and torch.is_grad_enabled():
            return adjoint_integrate(self, x, return_trajectory)
        checkpointed = self._memory == "checkpoint" and torch.is_grad_enabled()
        layers = list(self.layers)  # plain indexing: ModuleList.__getitem__ costs per stage
        blends = self._blend_parameters(layers)
        plan = self._steps

        def step(k: int, x: torch.Tensor) -> tuple[torch.Tensor]:
            return (self._step(x, plan[k], layers, blends),)

        states = self._march(step, (x,), checkpointed, return_trajectory)
        if return_trajectory:
            return torch.stack([x, *(state[0] for state in states)])
        return states[-1][0]

    def _blend_parameters(self, layers: list[nn.Module]) -> list[dict[str, torch.Tensor]]:
        """The interpolated parameters of every blended control, by slot."""
        return [
            blend_parameters(self._param_names, layers[c.left], layers[c.right], c.weight)
            for c in self._blends
        ]

    def _step(
        self,
        x: torch.Tensor,
        step: _Step,
        layers: list[nn.Module],
        blends: list[dict[str, torch.Tensor]],
    ) -> torch.Tensor:
        """One Runge-Kutta step of the plan from state ``x``."""
        slopes: list[torch.Tensor] = []
        for stage in step.stages:
            y = _combine(x, stage.increments, slopes)
            layer = layers[stage.control]
            if stage.blend is None:
                slope = layer(y)
            else:
                slope = functional_call(layer, blends[stage.blend], (y,))
            check_layer_output(type(self).__name__, layer, y, slope)  # else it would broadcast
            slopes.append(slope)
        return _combine(x, step.update, slopes)

    def extra_repr(self) -> str:
        return (
            f"t={format_times(self._t)} ({self.num_steps} steps), "
            f"scheme={self._tableau.name}, "
            f"t_theta={format_times(self._t_theta)} ({len(self._t_theta)} controls), "
            f"interpolation={self._interpolation}"
        )
