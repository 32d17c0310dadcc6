"""The block core: one module that every family of blocks is built on.

A block integrates one or more layer functions (fields) over a time grid with
a method (:mod:`dynamicblocks.methods`). The core owns everything the families
share:

* the state grid ``t``, the control times ``t_theta`` and their
  interpolation (:mod:`dynamicblocks.weights`), validated once;
* the copies of every field's layer, one per control time, in
  :meth:`control_layers`;
* the method's plan, resolved at construction: every evaluation's control and
  blended slot (:class:`~dynamicblocks.core.Resolver`), step sizes and
  coefficients, so the forward loop does no host synchronisation;
* one blend path (:class:`~dynamicblocks.core.Fields`: each blended slot is
  computed once per pass by ``torch.lerp``);
* the loop and the memory-mode dispatch (:mod:`dynamicblocks.memory`);
* the operations in depth: :meth:`remanifest_`, :meth:`refine_`,
  :meth:`project` (and, through :meth:`control_layers`,
  :func:`~dynamicblocks.time_regularization` and
  :func:`~dynamicblocks.carry_optimizer_state`).

A family is a small subclass that picks its method and says how its input maps
to a state (one tensor, a pair of streams, a state and its predecessor).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

import torch
from torch import nn

from .._buffers import buffers_restored
from .._validate import check_module, format_times
from ..grid import GridLike, as_grid, refine_grid
from ..memory import MemoryModule
from ..memory.adjoint import adjoint_solve
from ..memory.checkpoint import march_checkpointed
from ..memory.reversible import reversible_solve
from ..projection import basis_matrix, projection_matrix
from ..weights import check_controls_used, check_interpolation, resolve_stage_controls
from .fields import Fields, Slot
from .resolver import Resolver

__all__ = ["TimeBlock"]

State = tuple


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


class TimeBlock(MemoryModule):
    """Base of every block: a method integrating its fields over a grid with weights in time.

    Subclasses name their layer lists in :attr:`field_attributes` (one per
    field of the method, e.g. ``("layers",)`` or ``("layers1", "layers2")``)
    and call :meth:`_build` from their constructor.

    Class attributes a family sets:

    * ``field_attributes``: the names of the per-field ``nn.ModuleList``;
    * ``field_arguments``: the constructor arguments of the fields'
      prototypes, for messages;
    * ``fixed_scheme``: the scheme's name for families that take no
      ``scheme`` argument (``None`` for those that do);
    * ``streams``: into how many channel groups the family splits its input
      (2 for the Hamiltonian block's ``(y, z)``).
    """

    field_attributes: ClassVar[tuple[str, ...]] = ("layers",)
    field_arguments: ClassVar[tuple[str, ...]] = ("layer",)
    fixed_scheme: ClassVar[str | None] = None
    streams: ClassVar[int] = 1

    _t: tuple[float, ...]
    _t_theta: tuple[float, ...]
    _interpolation: str
    _report: Any = None  # where a method reports its solves; ImplicitBlock records them
    _steer: float = 0.0
    _stats: Any = None  # the regularisers' collector while ode_regularizers is open

    def _build(
        self,
        method: Any,
        layers: Sequence[nn.Module],
        t: GridLike,
        t_theta: GridLike | None,
        interpolation: str,
        memory: str,
    ) -> None:
        """Validate the grids, copy the layers, plan the steps and set the memory mode.

        Raises:
            TypeError: if a layer is not an ``nn.Module``, or a grid is not a
                sequence of real numbers.
            ValueError: for an invalid grid, interpolation or memory mode, or
                a control time outside ``[t[0], t[-1]]`` that no evaluation
                uses (see :func:`dynamicblocks.weights.check_controls_used`).
        """
        for name, layer in zip(self.field_arguments, layers):
            check_module(name, layer)
        t = as_grid(t, name="t")
        t_theta = t[:-1] if t_theta is None else as_grid(t_theta, "t_theta", 1)
        check_interpolation(interpolation)
        check_controls_used(type(self).__name__, t, method.live_times, t_theta, interpolation)
        self._method = method
        self._configure(t, t_theta, interpolation)
        for attribute, layer in zip(self.field_attributes, layers):
            setattr(self, attribute, nn.ModuleList(copy.deepcopy(layer) for _ in t_theta))
        self._names = tuple(tuple(name for name, _ in layer.named_parameters()) for layer in layers)
        self.memory = memory

    def _configure(
        self, t: tuple[float, ...], t_theta: tuple[float, ...], interpolation: str
    ) -> None:
        """Set the (validated) grids and plan every step of the method."""
        self._t, self._t_theta, self._interpolation = t, t_theta, interpolation
        resolver = Resolver(t, t_theta, interpolation)
        self._plan = self._method.plan(t, resolver)
        self._slots = resolver.slots()

    # ------------------------------------------------------------------ what the core shows

    @property
    def method(self) -> Any:
        """The method (solver) that steps the block."""
        return self._method

    @property
    def plan(self) -> tuple[Any, ...]:
        """The method's plan, one entry per step, built at construction."""
        return self._plan

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

    def control_layers(self) -> tuple[nn.ModuleList, ...]:
        """The per-control copies of every field's layer, one list per field, in time order."""
        return tuple(getattr(self, attribute) for attribute in self.field_attributes)

    def reset_parameters(self) -> None:
        """Re-initialise every control independently (each submodule's ``reset_parameters``)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def fields(
        self,
        detached: bool = False,
        group: int = 0,
        slots: Sequence[Slot] | None = None,
        scale: float = 1.0,
    ) -> Fields:
        """The fields for one pass, every blended slot of ``group`` computed once.

        ``slots`` replaces the plan's slots of ``group``: those of evaluations
        resolved on another grid (an adaptive step's, see
        :mod:`dynamicblocks.adaptive`). ``scale`` multiplies every evaluation
        (STEER, see :attr:`steer`).
        """
        return Fields(
            self.control_layers(),
            self._names,
            self._slots[group] if slots is None else slots,
            type(self).__name__,
            detached,
            self._report,
            scale,
        )

    # ------------------------------------------------------------- STEER and regularisers

    @property
    def steer(self) -> float:
        """STEER's half-width ``b``: in training the end time is drawn from ``[T - b, T + b]``.

        Each forward pass in training mode draws ``T'`` uniformly from
        ``[T - b, T + b]`` (``T = t[-1]``) and integrates to it on the grid
        scaled by ``(T' - t[0]) / (T - t[0])``, control times included (Ghosh
        et al., "STEER: simple temporal regularization for neural ODEs",
        NeurIPS 2020). For the first-order methods here this equals
        multiplying every field by that factor, which is how it is done. The
        draw uses torch's default CPU generator (``torch.manual_seed``
        reproduces it). ``0`` (default) is off; evaluation mode never draws.
        Set it for a whole network with :func:`~dynamicblocks.set_steer`.

        Raises:
            ValueError: if ``b`` is not in ``[0, t[-1] - t[0])``, or the method
                is not first order in time (its fields cannot be rescaled).
        """
        return self._steer

    @steer.setter
    def steer(self, b: float) -> None:
        self._steer = self.check_steer(b)

    def check_steer(self, b: float) -> float:
        """``b`` as a float if :attr:`steer` accepts it (nothing is set).

        Raises:
            ValueError: as :attr:`steer`.
        """
        span = self._t[-1] - self._t[0]
        if not isinstance(b, (int, float)) or isinstance(b, bool) or not 0.0 <= b < span:
            raise ValueError(
                f"{type(self).__name__}.steer must be a number in [0, {span:g}) "
                f"(the half-width of the end time's range, less than t[-1] - t[0]), got {b!r}"
            )
        if b and not self._method.time_scalable:
            raise ValueError(
                f"{type(self).__name__}.steer needs a first-order method whose fields can be "
                f"rescaled in time; {self._method.name} is not one"
            )
        return float(b)

    def _time_scale(self) -> float:
        """This pass's factor on the fields: STEER's draw in training, else 1."""
        if not self._steer or not self.training:
            return 1.0
        span = self._t[-1] - self._t[0]
        return 1.0 + self._steer * (2.0 * float(torch.rand(())) - 1.0) / span

    # ---------------------------------------------------------------------- the loop

    def _mode(self, keep: bool) -> str:
        """The memory mode this pass runs in (``"full"`` without autograd)."""
        if not torch.is_grad_enabled():
            return "full"
        if keep and self._memory == "reversible":
            return "full"  # every state is kept anyway
        return self._memory

    def _recompute_context(self) -> tuple[AbstractContextManager, AbstractContextManager]:
        """Checkpointing's contexts: none for the forward, buffers kept for the recomputation."""
        return nullcontext(), buffers_restored(self)

    def integrate(
        self,
        state: State,
        keep: bool = False,
        mode: str | None = None,
        scale: float | None = None,
    ) -> list[State]:
        """Step ``state`` over the whole grid.

        Args:
            state: the initial state (a tuple; entries may be ``None`` where the
                method allows, e.g. no previous state).
            keep: return the state after every step, not only the last.
            mode: the memory mode (default: this pass's, from :attr:`memory`).
            scale: the factor on every field (default: STEER's draw, see
                :attr:`steer`).

        Returns:
            The states after every step if ``keep``, else a list holding the last.

        Raises:
            ValueError: if regularisers are being collected
                (:func:`~dynamicblocks.ode_regularizers`) in a memory mode other
                than ``"full"``.
        """
        mode = self._mode(keep) if mode is None else mode
        scale = self._time_scale() if scale is None else scale
        if self._stats is not None and mode != "full":
            raise ValueError(
                f"{type(self).__name__} runs with memory={mode!r}, but the regularisers "
                "are taken from the stages autograd stores: set memory='full' "
                "(dynamicblocks.set_memory(model, 'full')) while collecting them"
            )
        if mode == "adjoint":
            return adjoint_solve(self, state, keep, scale)
        if mode == "reversible":
            return [reversible_solve(self, state, scale)]
        fields, step, plan = self.fields(scale=scale), self._method.step, self._plan
        if self._stats is not None:
            fields = self._stats.recording(fields)
        if mode == "checkpoint":

            def advance(k: int, *state: torch.Tensor | None) -> State:
                return step(plan[k], state, fields)

            return march_checkpointed(advance, state, self.num_steps, keep, self._recompute_context)
        states = []
        for k in range(self.num_steps):
            state = step(plan[k], state, fields)
            if keep:
                states.append(state)
        return states if keep else [state]

    def _run(
        self, state: State, return_trajectory: bool = False, return_pair: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """What a ``forward`` returns: the last state's first entry, by default.

        ``return_trajectory``: the first entries of every state, from the
        initial one, stacked; ``return_pair``: the last state's first two
        entries (e.g. ``(x_N, x_{N-1})``).

        Raises:
            ValueError: if both are asked for.
        """
        if return_pair and return_trajectory:
            raise ValueError("return_pair and return_trajectory cannot both be true")
        states = self.integrate(state, return_trajectory)
        if return_trajectory:
            return torch.stack([state[0], *(step[0] for step in states)])
        last = states[-1]
        return (last[0], last[1]) if return_pair else last[0]

    def _inverse(self, state: State) -> State:
        """The state that :meth:`integrate` maps to ``state``, by the method's inverse steps."""
        fields, inverse, plan = self.fields(), self._method.inverse_step, self._plan
        for k in reversed(range(self.num_steps)):
            state = inverse(plan[k], state, fields)
        return state

    # ------------------------------------------------------------ operations in depth

    def remanifest_(self, t: GridLike | None = None) -> None:
        """Put the block on grid ``t`` in place, keeping ``theta(t)``.

        The controls (modules, control times, interpolation) are untouched, so
        the weights at the new evaluation times come from the same
        ``theta(t)``: looked up for ``"constant"``, interpolated for
        ``"linear"``. With the same grid the block computes exactly the same
        function. Unlike the constructor, this does not require the new grid
        to use every control (a coarser grid for evaluation may skip some);
        the weights of a control no evaluation uses get no gradient.
        """
        t = self._t if t is None else as_grid(t, name="t")
        self._configure(t, self._t_theta, self._interpolation)

    def remanifest(self, *args: Any, **kwargs: Any) -> TimeBlock:
        """A copy of the block put on a new grid (and scheme, where the family has one).

        Takes the arguments of :meth:`remanifest_`; this block is left unchanged.
        """
        block = copy.deepcopy(self)
        block.remanifest_(*args, **kwargs)
        return block

    def refine_(self) -> dict[nn.Parameter, tuple[nn.Parameter, ...]]:
        """Halve every step and (about) double the controls, in place, keeping ``theta(t)``.

        The grid becomes :func:`~dynamicblocks.refine_grid` of the old one. A
        new control is inserted after every control ``j``, halfway to the next
        control time, in every field:

        * ``"constant"``: the new control is a copy of control ``j`` (also
          after the last control, halfway to ``t[-1]``, if that lies beyond it),
          so with one control per step the refined block again has one per step;
        * ``"linear"``: the new control is the average of controls ``j`` and
          ``j + 1`` (none after the last), which is ``theta`` at the midpoint.

        Either way ``theta(t)`` is exactly the same function, so the block's
        output changes only by the discretisation error of the finer grid.
        Buffers (BatchNorm running statistics) are copied, or averaged where
        floating point, alike. The old control modules stay in place as the
        same objects, so their parameters keep their identity (and their
        optimiser state).

        Returns:
            For every new parameter, the parameters it was made from: pass it
            to :func:`dynamicblocks.carry_optimizer_state` to give the new
            parameters their sources' momentum.
        """
        knots, t_end, constant = self._t_theta, self._t[-1], self._interpolation == "constant"
        inserts: list[tuple[int, tuple[int, ...], float]] = []  # (after j, sources, time)
        for j, time in enumerate(knots):
            if j + 1 < len(knots):
                following, partners = knots[j + 1], (j, j + 1)
            elif constant and t_end > time:
                following, partners = t_end, (j,)
            else:
                continue
            inserts.append((j, partners[:1] if constant else partners, 0.5 * (time + following)))
        sources: dict[nn.Parameter, tuple[nn.Parameter, ...]] = {}
        added = {j: partners for j, partners, _ in inserts}
        for attribute, old in zip(self.field_attributes, self.control_layers()):
            old, layers = list(old), []
            for j, layer in enumerate(old):
                layers.append(layer)
                if j in added:
                    new = _average_modules([old[i] for i in added[j]])
                    layers.append(new)
                    for name, param in new.named_parameters():
                        sources[param] = tuple(old[i].get_parameter(name) for i in added[j])
            setattr(self, attribute, nn.ModuleList(layers))
        times = sorted([*knots, *(time for _, _, time in inserts)])
        t_theta = as_grid(times, "t_theta", 1)
        self._configure(refine_grid(self._t), t_theta, self._interpolation)
        return sources

    def insert_controls_(
        self, times: Sequence[float]
    ) -> dict[nn.Parameter, tuple[nn.Parameter, ...]]:
        """Add controls at ``times`` in place, each holding ``theta`` there, keeping ``theta(t)``.

        A new control is, in every field, a copy of the control that owns its
        time (``"constant"``: the one at or left of it), with, for
        ``"linear"``, the parameters interpolated there (buffers from the
        nearer control). Times that are control times already are skipped;
        the grid is unchanged (see :meth:`remanifest_`).

        Returns:
            For every new parameter, the parameters it was made from (for
            :func:`dynamicblocks.carry_optimizer_state`).

        Raises:
            TypeError, ValueError: if ``times`` is not a sequence of finite numbers.
        """
        new = sorted(set(as_grid(sorted(set(times)), "times", 1)) - set(self._t_theta))
        controls = [
            resolve_stage_controls((time, time + 1.0), (0.0,), self._t_theta, self._interpolation)
            for time in new
        ]
        sources: dict[nn.Parameter, tuple[nn.Parameter, ...]] = {}
        knots = sorted([*self._t_theta, *new])
        for attribute, old in zip(self.field_attributes, self.control_layers()):
            by_time = dict(zip(self._t_theta, old))
            for time, ((control,),) in zip(new, controls):
                module = copy.deepcopy(old[control.owner])
                parents = (old[control.left],) + (
                    () if control.right is None else (old[control.right],)
                )
                with torch.no_grad():
                    for name, param in module.named_parameters():
                        if control.right is not None:
                            left = old[control.left].get_parameter(name)
                            right = old[control.right].get_parameter(name)
                            param.copy_(torch.lerp(left, right, control.weight))
                        sources[param] = tuple(parent.get_parameter(name) for parent in parents)
                by_time[time] = module
            setattr(self, attribute, nn.ModuleList(by_time[time] for time in knots))
        self._configure(self._t, as_grid(knots, "t_theta", 1), self._interpolation)
        return sources

    def project(self, t_theta: GridLike, interpolation: str | None = None) -> TimeBlock:
        """A new block whose ``theta(t)`` is the L2 projection onto other (fewer) controls.

        The new controls at ``t_theta`` with ``interpolation`` (default: this
        block's) minimise ``integral over [t[0], t[-1]] of |theta(t) - theta_new(t)|^2
        dt`` for every parameter entry of every field (see
        :func:`dynamicblocks.projection_matrix`); a ``theta(t)`` that already
        lies in the new space is returned exactly. Buffers are copied from the
        old control that owns the new control time (at or left of it for
        ``"constant"``, the nearer one for ``"linear"``). The grid and method
        are unchanged; this block is left unchanged.

        Raises:
            ValueError: if ``t_theta`` has more points than the block has
                controls, a new control has no support on the interval, or a
                new control outside the grid's range is used by no evaluation
                (as in the constructor).
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
            type(self).__name__, self._t, self._method.live_times, t_theta, interpolation
        )
        owners = basis_matrix(t_theta, self._t_theta, self._interpolation).argmax(dim=1)
        skip = {id(layers): nn.ModuleList() for layers in self.control_layers()}
        block = copy.deepcopy(self, memo=skip)  # without the old layers
        for attribute, old, names in zip(self.field_attributes, self.control_layers(), self._names):
            layers = [copy.deepcopy(old[int(owner)]) for owner in owners]
            with torch.no_grad():
                for name in names:
                    values = torch.stack([layer.get_parameter(name).double() for layer in old])
                    new = (matrix @ values.flatten(1)).view(len(layers), *values.shape[1:])
                    for layer, value in zip(layers, new):
                        layer.get_parameter(name).copy_(value)
            setattr(block, attribute, nn.ModuleList(layers))
        block._configure(self._t, t_theta, interpolation)
        return block

    def extra_repr(self) -> str:
        method = self._method.describe()
        return (
            f"t={format_times(self._t)} ({self.num_steps} steps), "
            f"t_theta={format_times(self._t_theta)} ({len(self._t_theta)} controls), "
            f"interpolation={self._interpolation}" + (f", {method}" if method else "")
        )
