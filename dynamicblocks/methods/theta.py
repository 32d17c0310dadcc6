"""Implicit blocks: the theta-method and the implicit midpoint rule, with implicit differentiation.

A step of the theta-method is the solution ``y`` of

    y = x + h [(1 - theta) f(x) + theta f(y)]

(``theta = 1``: backward Euler, order 1; ``theta = 1/2``: the trapezoidal rule,
order 2; ``theta = 0``: explicit Euler, computed directly). The one-leg implicit
midpoint rule solves ``y = x + h f((x + y) / 2)`` (order 2). Following
Reshniak & Webster, "Robust learning with implicit residual networks"
(arXiv:1905.10479):

* **forward**: each step's equation is solved by Anderson-accelerated
  fixed-point iteration (:func:`dynamicblocks.methods.fixed_point.anderson`) from an
  explicit-Euler predictor, under ``torch.no_grad()``, so no iteration is
  recorded for autograd;
* **backward**: by the implicit function theorem. With ``G`` the step's map
  and ``y* = G(y*)``, the gradient ``g`` arriving at the step's output is
  replaced by the solution ``w`` of ``w = g + J_G(y*)^T w`` (solved by the same
  Anderson iteration on vector-Jacobian products), then propagated through one
  evaluation of ``G`` to ``x`` and the weights. Memory per step is two
  evaluations of ``f``, whatever the number of iterations.

Convergence of every solve is recorded in :attr:`ImplicitBlock.solver_stats`
(forward) and :attr:`ImplicitBlock.backward_stats`; a solve that does not reach
the tolerance warns (:class:`ConvergenceWarning`) or raises
(:class:`ConvergenceError`), as ``on_failure`` says.

Layers with BatchNorm in training mode update their running statistics at every
evaluation, iterations included; prefer ``norm=None`` or ``"tv"`` inside
implicit blocks, or keep BatchNorm in eval mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from .._validate import int_in_range, one_of, positive_int, real_number
from ..core.block import TimeBlock
from ..core.fields import Evaluation
from ..grid import GridLike
from .base import Method, State
from .fixed_point import FixedPointResult, anderson

__all__ = [
    "ThetaMethod",
    "ImplicitBlock",
    "IMPLICIT_SCHEMES",
    "ConvergenceWarning",
    "ConvergenceError",
]

IMPLICIT_SCHEMES = {
    "backward_euler": 1.0,
    "trapezoid": 0.5,
    "theta": None,
    "implicit_midpoint": None,
}
"""Scheme names and their theta (``"theta"`` takes it from the ``theta`` argument)."""

ON_FAILURE = ("warn", "raise", "ignore")


class ConvergenceWarning(UserWarning):
    """A fixed-point solve stopped at ``max_iter`` above its tolerance."""


class ConvergenceError(RuntimeError):
    """A fixed-point solve stopped at ``max_iter`` above its tolerance (``on_failure="raise"``)."""


class _Step(NamedTuple):
    index: int
    h: float
    evaluations: tuple[Evaluation, ...]  # (f at t_k + h/2,) or (f at t_k, f at t_{k+1})


class ThetaMethod(Method):
    """The theta-method or the implicit midpoint rule, each step solved by Anderson iteration.

    The branch (midpoint, theta-method, or explicit Euler for ``theta = 0``) is
    chosen here, once; the step only solves. Solves are reported through the
    ``report`` of the fields it is given (the block records them).
    """

    time_scalable = True

    def __init__(
        self,
        scheme: str = "backward_euler",
        theta: float | None = None,
        tol: float = 1e-6,
        max_iter: int = 50,
        anderson_memory: int = 5,
    ) -> None:
        one_of("scheme", scheme, tuple(IMPLICIT_SCHEMES))
        if scheme == "theta":
            if theta is None:
                raise ValueError('scheme="theta" needs theta, a number in [0, 1]')
            theta = real_number("theta", theta, "a number in [0, 1]", 0.0, 1.0)
        elif theta is not None:
            raise ValueError(f"theta is only for scheme='theta'; {scheme} fixes it, got {theta!r}")
        else:
            theta = IMPLICIT_SCHEMES[scheme]
        self.scheme, self.theta = scheme, theta
        self.tol = real_number("tol", tol, "a positive number", 0.0, open_low=True, open_high=True)
        self.max_iter = positive_int("max_iter", max_iter)
        self.anderson_memory = int_in_range("anderson_memory", anderson_memory, 0)
        if scheme == "implicit_midpoint":
            self.live_times: tuple[float, ...] = (0.5,)
            self.step = self._midpoint_step
        else:  # f(x) at t_k weighs 1 - theta, f(y) at t_{k+1} weighs theta
            self.live_times = tuple(c for c, w in ((0.0, 1.0 - theta), (1.0, theta)) if w != 0.0)
            self.step = self._explicit_step if theta == 0 else self._theta_step

    @property
    def name(self) -> str:
        return f"theta={self.theta:g}" if self.scheme == "theta" else self.scheme

    def describe(self) -> str:
        return f"scheme={self.name}, tol={self.tol:g}, max_iter={self.max_iter}"

    def plan(self, t: Sequence[float], resolve: Any) -> tuple[_Step, ...]:
        times = (0.5,) if self.scheme == "implicit_midpoint" else (0.0, 1.0)
        return tuple(
            _Step(k, t_next - t_k, tuple(resolve(k, c) for c in times))
            for k, (t_k, t_next) in enumerate(zip(t, t[1:]))
        )

    @classmethod
    def memory_modes(cls) -> tuple[str, ...]:
        return ("full",)  # the implicit-function-theorem backward stores no iterations

    def _explicit_step(self, plan: _Step, state: State, evaluate: Any) -> State:
        (x,) = state
        return (torch.add(x, evaluate(plan.evaluations[0], x), alpha=plan.h),)

    def _theta_step(self, plan: _Step, state: State, evaluate: Any) -> State:
        (x,) = state
        left, right = plan.evaluations
        h, theta = plan.h, self.theta
        fx = evaluate(left, x) if theta < 1 else None
        base = x if fx is None else torch.add(x, fx, alpha=h * (1 - theta))

        def G(y: torch.Tensor, base_: torch.Tensor) -> torch.Tensor:
            return torch.add(base_, evaluate(right, y), alpha=h * theta)

        return (self._solve(plan, x, G, base, fx, evaluate),)

    def _midpoint_step(self, plan: _Step, state: State, evaluate: Any) -> State:
        (x,) = state
        (middle,) = plan.evaluations
        h = plan.h

        def G(y: torch.Tensor, x_: torch.Tensor) -> torch.Tensor:
            return torch.add(x_, evaluate(middle, 0.5 * (x_ + y)), alpha=h)

        return (self._solve(plan, x, G, x, None, evaluate),)

    def _solve(
        self,
        plan: _Step,
        x: torch.Tensor,
        G: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        inputs: torch.Tensor,
        slope: torch.Tensor | None,
        evaluate: Any,
    ) -> torch.Tensor:
        """``y = G(y, inputs)`` from an explicit-Euler predictor; IFT gradient attached."""
        report = evaluate.report
        with torch.no_grad():
            if slope is None:
                slope = evaluate(plan.evaluations[0], x)
            predictor = torch.add(x, slope.detach(), alpha=plan.h)
            result = anderson(
                lambda y: G(y, inputs), predictor, self.tol, self.max_iter, self.anderson_memory
            )
        report("forward", plan.index, result)
        solution = result.solution.detach()
        out = G(solution, inputs)
        if out.requires_grad:
            self._attach_implicit_gradient(out, G, solution, inputs.detach(), plan.index, report)
        return out

    def _attach_implicit_gradient(
        self,
        out: torch.Tensor,
        G: Callable,
        solution: torch.Tensor,
        inputs: torch.Tensor,
        index: int,
        report: Callable,
    ) -> None:
        """Make ``out``'s incoming gradient ``g`` into ``(I - J_G^T)^{-1} g`` (IFT)."""
        probe = solution.clone().requires_grad_()
        with torch.enable_grad():
            value = G(probe, inputs)

        def hook(grad: torch.Tensor | None) -> torch.Tensor | None:
            if grad is None:
                return None

            def vjp_map(w: torch.Tensor) -> torch.Tensor:
                (jtw,) = torch.autograd.grad(value, probe, w, retain_graph=True)
                return grad + jtw

            with torch.no_grad():
                result = anderson(vjp_map, grad, self.tol, self.max_iter, self.anderson_memory)
            report("backward", index, result)
            return result.solution

        out.register_hook(hook)


class ImplicitBlock(TimeBlock):
    """A dynamic block stepped by an implicit scheme (see the module docstring).

    Weights in time work as in :class:`~dynamicblocks.DynamicBlock`: one copy
    of ``layer`` per control time, ``"constant"`` or ``"linear"``. In the
    theta-method ``f(x)`` is evaluated at ``t_k`` and ``f(y)`` at ``t_{k+1}``;
    the implicit midpoint rule evaluates at ``t_k + h/2``.

    Args:
        layer: the prototype layer function ``f``.
        t: the state grid (strictly increasing; non-uniform allowed).
        scheme: ``"backward_euler"``, ``"trapezoid"``, ``"implicit_midpoint"``
            or ``"theta"`` (with ``theta``).
        theta: the theta of ``scheme="theta"``, in [0, 1].
        t_theta: control times (default: one per step, ``t[:-1]``).
        interpolation: ``"constant"`` or ``"linear"``.
        tol: relative tolerance of the forward and backward solves.
        max_iter: the most evaluations of ``f`` per solve.
        anderson_memory: Anderson's history length (0: plain fixed-point
            iteration). (Not to be confused with :attr:`memory`, the memory
            mode of the backward pass, which for this block is ``"full"``: its
            implicit-function-theorem backward stores no iterations.)
        on_failure: ``"warn"`` (default), ``"raise"`` or ``"ignore"`` when a
            solve stops above ``tol``.

    Raises:
        TypeError: if ``layer`` is not an ``nn.Module``, or a grid is not a
            sequence of real numbers.
        ValueError: for an invalid grid, scheme, theta, interpolation, tol,
            max_iter, anderson_memory or on_failure, or if a control time of
            ``t_theta`` outside ``[t[0], t[-1]]`` is used by no evaluation of
            ``f`` that reaches the result (its weights would never get a
            gradient; see :func:`dynamicblocks.weights.check_controls_used`).
            Those evaluations are at ``t_k`` (if ``theta < 1``) and ``t_{k+1}``
            (if ``theta > 0``), or at ``t_k + h/2`` for the implicit midpoint
            rule.
    """

    memory_modes = ThetaMethod.memory_modes()

    def __init__(
        self,
        layer: nn.Module,
        t: GridLike,
        scheme: str = "backward_euler",
        theta: float | None = None,
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
        tol: float = 1e-6,
        max_iter: int = 50,
        anderson_memory: int = 5,
        on_failure: str = "warn",
    ) -> None:
        super().__init__()
        method = ThetaMethod(scheme, theta, tol, max_iter, anderson_memory)
        self.on_failure = one_of("on_failure", on_failure, ON_FAILURE)
        self._build(method, (layer,), t, t_theta, interpolation, "full")
        self.solver_stats: list[dict] = []
        self.backward_stats: list[dict] = []

    @property
    def scheme(self) -> str:
        """The scheme's name."""
        return self._method.scheme

    @property
    def theta(self) -> float:
        """The theta of the theta-method (0.5 for the implicit midpoint rule's weighting)."""
        return self._method.theta

    @property
    def tol(self) -> float:
        """Relative tolerance of the forward and backward solves."""
        return self._method.tol

    @property
    def max_iter(self) -> int:
        """The most evaluations of ``f`` per solve."""
        return self._method.max_iter

    @property
    def anderson_memory(self) -> int:
        """Anderson's history length (0: plain fixed-point iteration)."""
        return self._method.anderson_memory

    def _report(self, what: str, step: int, result: FixedPointResult) -> None:
        stats = self.solver_stats if what == "forward" else self.backward_stats
        stats.append({"step": step, "iterations": result.iterations,
                      "residual": result.residual, "converged": result.converged})  # fmt: skip
        if result.converged or self.on_failure == "ignore":
            return
        message = (
            f"{what} solve of step {step} stopped after {result.iterations} iterations at "
            f"relative residual {result.residual:.2e} > tol {self.tol:.1e}; raise max_iter, "
            "shrink the step or check that h * Lipschitz(f) < 1"
        )
        if self.on_failure == "raise":
            raise ConvergenceError(message)
        warnings.warn(message, ConvergenceWarning, stacklevel=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``x`` (``(N, *)`` -> ``(N, *)``).

        Raises:
            ValueError: if the layer returns a tensor of another shape than its
                input's (or no tensor), naming the block, the layer and both shapes.
        """
        self.solver_stats, self.backward_stats = [], []
        return self.integrate((x,))[-1][0]
