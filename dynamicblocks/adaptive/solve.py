"""Adaptive, error-controlled integration of a block with an embedded Runge-Kutta pair.

:func:`solve_adaptive` integrates a :class:`~dynamicblocks.DynamicBlock`'s
field over the block's interval ``[t[0], t[-1]]`` with steps chosen by an
embedded pair's error estimate (:mod:`dynamicblocks.adaptive.controller`),
using the block's weights in time ``theta(t)`` at every stage time (shared or
time-dependent weights alike; control times inside the interval end steps,
since ``theta(t)`` jumps or has a kink there). It returns the final state, the states at
``t_eval`` if asked, the accepted grid and the work done.

Gradients are discretize-then-optimize: autograd records the accepted steps
(a rejected step's values are dropped), so they are exactly the gradients of
the fixed-grid block on the accepted grid, and
``block.remanifest(solution.t, scheme)`` is that fixed-grid model, which
costs what the adaptive solve did and computes the same values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .._validate import check_tensor, int_in_range, one_of
from ..core.resolver import Resolver
from ..methods.runge_kutta import DynamicBlock
from ..tableaus import TABLEAUS, ButcherTableau, SchemeLike, get_tableau
from .adjoint import adjoint_solve
from .controller import Controller, StepSizeError, error_ratio, initial_step
from .pair import Pair
from .per_sample import solve_per_sample

__all__ = ["AdaptiveSolution", "StepSizeError", "solve_adaptive"]


@dataclass(frozen=True)
class AdaptiveSolution:
    """What :func:`solve_adaptive` returns.

    Attributes are ``y`` (the state at ``t[-1]``), ``ys`` (the states at
    ``t_eval``, stacked as ``(len(t_eval), N, *)``, or None), ``t`` (the
    accepted grid, from the block's ``t[0]`` to its ``t[-1]``), and the work:
    ``evaluations`` of the field, ``accepted`` and ``rejected`` steps. With
    ``per_sample=True``, ``t``, ``accepted`` and ``rejected`` hold one entry
    per sample, and ``evaluations`` counts evaluations of the whole batch.
    """

    y: torch.Tensor
    ys: torch.Tensor | None
    t: tuple
    evaluations: int
    accepted: int | tuple[int, ...]
    rejected: int | tuple[int, ...]


def _pair(block: object, x: object, scheme: SchemeLike | None) -> ButcherTableau:
    """The embedded pair to step ``block`` with, after checking ``block`` and ``x``."""
    if not isinstance(block, DynamicBlock):
        raise TypeError(f"block must be a DynamicBlock, got {type(block).__name__}")
    check_tensor("x", x)
    tableau = block.tableau if scheme is None else get_tableau(scheme)
    if not tableau.embedded:
        raise ValueError(
            f"scheme {tableau.name!r} has no error estimate: an adaptive solve needs an "
            "embedded pair such as 'heun_euler', 'bosh3', 'dopri5' or 'tsit5' (scheme=...)"
        )
    return tableau


def _check_first_step(first_step: object) -> None:
    if (
        isinstance(first_step, bool)
        or not isinstance(first_step, (int, float))
        or not (math.isfinite(first_step) and first_step > 0)
    ):
        raise ValueError(f"first_step must be a positive finite number, got {first_step!r}")


def _times(t_eval: Sequence[float] | None, start: float, end: float) -> tuple[float, ...]:
    if t_eval is None:
        return ()
    times = tuple(float(time) for time in t_eval)
    if any(not math.isfinite(time) or not start <= time <= end for time in times):
        raise ValueError(f"t_eval must lie in the block's interval [{start}, {end}], got {times}")
    if any(b < a for a, b in zip(times, times[1:])):
        raise ValueError(f"t_eval must be sorted, got {times}")
    return times


class _Field:
    """The block's field at any time and stage, with ``theta(t)`` resolved per step."""

    def __init__(self, block: DynamicBlock, tableau: ButcherTableau) -> None:
        self.block, self.tableau, self.evaluations = block, tableau, 0
        self.shared = len(block.t_theta) == 1
        self._shared: Callable[[int, torch.Tensor], torch.Tensor] | None = None

    def step(self, t0: float, t1: float) -> Callable[[int, torch.Tensor], torch.Tensor]:
        """``evaluate(i, x)``: stage ``i`` of a step (resolved once for shared weights)."""
        if self._shared is not None:
            return self._shared
        resolver = Resolver((t0, t1), self.block.t_theta, self.block.interpolation, groups=1)
        evaluations = [resolver(0, c) for c in self.tableau.c]
        fields = self.block.fields(slots=resolver.slots()[0])

        def evaluate(i: int, x: torch.Tensor) -> torch.Tensor:
            return fields(evaluations[i], x)

        if self.shared:  # one control: the same at every time
            self._shared = evaluate
        return evaluate

    def at(self, time: float, x: torch.Tensor) -> torch.Tensor:
        self.evaluations += 1
        return self.step(time, time + 1.0)(0, x)


def solve_adaptive(
    block: DynamicBlock,
    x: torch.Tensor,
    *,
    rtol: float | torch.Tensor = 1e-6,
    atol: float | torch.Tensor = 1e-8,
    scheme: SchemeLike | None = None,
    t_eval: Sequence[float] | None = None,
    first_step: float | None = None,
    max_steps: int = 10_000,
    controller: Controller | None = None,
    per_sample: bool = False,
    gradient: str = "discretize",
    seminorm: bool = False,
) -> AdaptiveSolution:
    """Integrate ``block``'s field from ``t[0]`` to ``t[-1]`` with error-controlled steps.

    Args:
        block: the block whose field, weights in time and interval are used
            (its own grid is not).
        x: the initial state ``(N, *)``.
        rtol: relative tolerance, a number or a tensor broadcastable to ``x``.
        atol: absolute tolerance, likewise.
        scheme: an embedded pair (default: the block's own scheme, which must
            then be one): ``"heun_euler"``, ``"bosh3"``, ``"dopri5"``,
            ``"tsit5"`` or a :class:`~dynamicblocks.ButcherTableau` with
            ``b_embedded``.
        t_eval: times in ``[t[0], t[-1]]``, sorted, at which to return the
            state, interpolated within the accepted steps (``dopri5``'s
            fourth-order continuous extension; cubic Hermite for the others).
        first_step: the first trial step (default: Hairer's selection).
        max_steps: the most accepted steps.
        controller: the step-size controller (default: ``Controller(rtol,
            atol)``, an I controller with torchdiffeq's settings); if given,
            its tolerances are used and ``rtol``, ``atol`` are ignored.
        per_sample: give every sample its own time and step size
            (:mod:`dynamicblocks.adaptive.per_sample`; shared weights only,
            without ``t_eval``).
        gradient: ``"discretize"`` (default: autograd through the accepted
            steps) or ``"adjoint"`` (the adjoint equation solved adaptively
            backwards, :mod:`dynamicblocks.adaptive.adjoint`; scalar
            tolerances, without ``t_eval`` or ``per_sample``).
        seminorm: with ``"adjoint"``, leave the weights' gradient out of the
            backward error ratio (Kidger, Chen & Lyons, 2021).

    Returns:
        An :class:`AdaptiveSolution`.

    Raises:
        TypeError: if ``block`` is not a DynamicBlock or ``x`` not a tensor.
        ValueError: for a scheme without an error estimate, tolerances that are
            not positive and finite, ``t_eval`` outside the interval or
            unsorted, ``max_steps < 1``, a ``first_step`` that is not positive,
            or ``per_sample`` with ``t_eval`` or with more than one control.
        StepSizeError: when ``max_steps`` steps do not reach ``t[-1]`` or the
            step falls below the resolution of the time (the message gives the
            time reached and the step).
    """
    tableau = _pair(block, x, scheme)
    controller = Controller(rtol, atol) if controller is None else controller
    max_steps = int_in_range("max_steps", max_steps, 1)
    start, end = block.t[0], block.t[-1]
    times = _times(t_eval, start, end)
    if first_step is not None:
        _check_first_step(first_step)
    one_of("gradient", gradient, ("discretize", "adjoint"))
    if gradient == "adjoint":
        if times or per_sample:
            raise ValueError("gradient='adjoint' does not take t_eval or per_sample")
        if isinstance(controller.rtol, torch.Tensor) or isinstance(controller.atol, torch.Tensor):
            raise ValueError("gradient='adjoint' takes scalar rtol and atol")
        with torch.no_grad():
            forward = solve_adaptive(
                block, x, scheme=tableau, controller=controller, max_steps=max_steps
            )
        y, _ = adjoint_solve(block, x, forward.y, tableau, controller, max_steps, bool(seminorm))
        return AdaptiveSolution(
            y, None, forward.t, forward.evaluations, forward.accepted, forward.rejected
        )
    if per_sample:
        if times:
            raise ValueError("t_eval is not available with per_sample=True")
        y, grids, evaluations, accepted, rejected = solve_per_sample(
            block, x, tableau, controller, max_steps, first_step
        )
        return AdaptiveSolution(y, None, grids, evaluations, accepted, rejected)
    field = _Field(block, tableau)
    exponent = tableau.embedded_order + 1
    pair = Pair(tableau)
    reuse = tableau.fsal and field.shared

    slope = field.at(start, x)
    if first_step is None:
        with torch.no_grad():
            h = initial_step(
                field.at, start, x.detach(), slope.detach(), tableau.embedded_order, controller
            )
    else:
        h = float(first_step)

    # control times inside the interval end steps: theta(t) jumps ("constant") or has a
    # kink ("linear") there, which an error estimate inside one step would not see
    breaks = [time for time in block.t_theta if start < time < end]
    t, y, grid, outputs = start, x, [start], []
    pending = list(times)
    accepted = rejected = 0
    previous = 0.0
    while t < end:
        if accepted == max_steps:
            raise StepSizeError(
                f"max_steps = {max_steps} accepted steps reached t = {t!r} of [{start}, {end}]"
            )
        limit = next((time for time in breaks if time > t), end)
        t1 = limit if t + h >= limit or (limit - (t + h)) <= 1e-12 * abs(limit) else t + h
        step = t1 - t
        if step <= 4 * math.ulp(max(abs(t), abs(t1))):
            raise StepSizeError(f"the step size underflowed to {step!r} at t = {t!r}")
        slopes, y1, error = pair.step(y, step, field.step(t, t1), first=slope)
        field.evaluations += tableau.stages - 1
        ratio = error_ratio(error, y, y1, controller.rtol, controller.atol)
        if ratio <= 1.0:
            while pending and pending[0] <= t1:
                outputs.append((pending.pop(0), t, t1, y, y1, slopes))
            t, y = t1, y1
            grid.append(t1)
            accepted += 1
            h = step * controller.factor(ratio, previous, exponent, accepted=True)
            previous = ratio
            if t < end:
                slope = slopes[-1] if reuse else field.at(t, y)
        else:
            rejected += 1
            h = step * controller.factor(ratio, previous, exponent, accepted=False)
    ys = None
    if times:
        ys = torch.stack([_interpolate(field, *output) for output in outputs])
    return AdaptiveSolution(y, ys, tuple(grid), field.evaluations, accepted, rejected)


# Dormand-Prince's continuous extension at the midpoint of a step (Shampine, 1986):
# y(t_k + h / 2) = y_k + h sum_i m_i k_i, to fourth order.
_DOPRI5_MIDPOINT = (
    6025192743 / 30085553152 / 2,
    0.0,
    51252292925 / 65400821598 / 2,
    -2691868925 / 45128329728 / 2,
    187940372067 / 1594534317056 / 2,
    -1776094331 / 19743644256 / 2,
    11237099 / 235043384 / 2,
)


def _interpolate(
    field: _Field,
    time: float,
    t0: float,
    t1: float,
    y0: torch.Tensor,
    y1: torch.Tensor,
    slopes: list[torch.Tensor],
) -> torch.Tensor:
    """The state at ``time`` within one accepted step.

    For ``dopri5``, the quartic through ``y0``, ``y1``, the midpoint value
    and the slopes at both ends (fourth order, as torchdiffeq and torchode);
    for the other pairs the cubic Hermite interpolant of the end values and
    slopes (third order).
    """
    h = t1 - t0
    s = (time - t0) / h
    if s == 0.0:
        return y0
    if s == 1.0:
        return y1
    f0 = slopes[0]
    f1 = slopes[-1] if field.tableau.fsal else field.at(t1, y1)
    if field.tableau == TABLEAUS["dopri5"]:
        middle = y0 + h * sum(m * k for m, k in zip(_DOPRI5_MIDPOINT, slopes) if m != 0.0)
        a = 2 * h * (f1 - f0) - 8 * (y1 + y0) + 16 * middle
        b = h * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * middle
        c = h * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * middle
        return y0 + s * (h * f0 + s * (c + s * (b + s * a)))
    h00 = (1 + 2 * s) * (1 - s) ** 2
    h10 = s * (1 - s) ** 2
    h01 = s * s * (3 - 2 * s)
    h11 = s * s * (s - 1)
    return h00 * y0 + (h10 * h) * f0 + h01 * y1 + (h11 * h) * f1
