"""Implicit blocks: the theta-method and the implicit midpoint rule, with implicit differentiation.

A step of the theta-method is the solution ``y`` of

    y = x + h [(1 - theta) f(x) + theta f(y)]

(``theta = 1``: backward Euler, order 1; ``theta = 1/2``: the trapezoidal rule,
order 2; ``theta = 0``: explicit Euler, computed directly). The one-leg implicit
midpoint rule solves ``y = x + h f((x + y) / 2)`` (order 2). Following
Reshniak & Webster, "Robust learning with implicit residual networks"
(arXiv:1905.10479):

* **forward**: each step's equation is solved by Anderson-accelerated
  fixed-point iteration (:func:`dynamicblocks.fixed_point.anderson`) from an
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

import copy
import math
import numbers
import warnings
from collections.abc import Callable

import torch
from torch import nn

from ._validate import int_in_range, positive_int
from .fixed_point import anderson
from .grid import GridLike, as_grid, step_sizes
from .timeblock import TimeBlock, check_module, evaluate_control
from .weights import (
    StageControl,
    check_controls_used,
    check_interpolation,
    resolve_stage_controls,
)

__all__ = ["ImplicitBlock", "IMPLICIT_SCHEMES", "ConvergenceWarning", "ConvergenceError"]

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


def _unit_interval(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


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
        check_module("layer", layer)
        if scheme not in IMPLICIT_SCHEMES:
            raise ValueError(f"scheme must be one of {tuple(IMPLICIT_SCHEMES)}, got {scheme!r}")
        if scheme == "theta":
            if theta is None:
                raise ValueError('scheme="theta" needs theta, a number in [0, 1]')
            theta = _unit_interval("theta", theta)
        elif theta is not None:
            raise ValueError(f"theta is only for scheme='theta'; {scheme} fixes it, got {theta!r}")
        else:
            theta = IMPLICIT_SCHEMES[scheme]
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 < tol < math.inf:
            raise ValueError(f"tol must be a positive number, got {tol!r}")
        if on_failure not in ON_FAILURE:
            raise ValueError(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")
        self._t = as_grid(t, name="t")
        self._t_theta = self._t[:-1] if t_theta is None else as_grid(t_theta, "t_theta", 1)
        self._interpolation = check_interpolation(interpolation)
        if scheme == "implicit_midpoint":
            live: tuple[float, ...] = (0.5,)
        else:  # f(x) at t_k weighs 1 - theta, f(y) at t_{k+1} weighs theta
            live = tuple(c for c, w in ((0.0, 1.0 - theta), (1.0, theta)) if w != 0.0)
        check_controls_used(type(self).__name__, self._t, live, self._t_theta, interpolation)
        self.scheme, self.theta = scheme, theta
        self.tol, self.max_iter = float(tol), positive_int("max_iter", max_iter)
        self.anderson_memory = int_in_range("anderson_memory", anderson_memory, 0)
        self.on_failure = on_failure
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in self._t_theta)
        self._param_names = tuple(name for name, _ in layer.named_parameters())
        times = (0.5,) if scheme == "implicit_midpoint" else (0.0, 1.0)
        self._controls = resolve_stage_controls(self._t, times, self._t_theta, interpolation)
        self._h = step_sizes(self._t)
        self.solver_stats: list[dict] = []
        self.backward_stats: list[dict] = []

    def _field(self, control: StageControl, y: torch.Tensor) -> torch.Tensor:
        return evaluate_control(self.layers, self._param_names, control, y, type(self).__name__)

    def _report(self, stats: list[dict], what: str, step: int, result) -> None:
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

    def _solve(self, step: int, x: torch.Tensor, h: float) -> torch.Tensor:
        controls = self._controls[step]
        if self.scheme == "implicit_midpoint":
            (middle,) = controls

            def G(y: torch.Tensor, x_: torch.Tensor) -> torch.Tensor:
                return torch.add(x_, self._field(middle, 0.5 * (x_ + y)), alpha=h)

            slope, inputs = None, x
        else:
            left, right = controls
            theta = self.theta
            fx = self._field(left, x) if theta < 1 else None
            if theta == 0:
                return torch.add(x, fx, alpha=h)
            base = x if fx is None else torch.add(x, fx, alpha=h * (1 - theta))

            def G(y: torch.Tensor, base_: torch.Tensor) -> torch.Tensor:
                return torch.add(base_, self._field(right, y), alpha=h * theta)

            slope, inputs = fx, base
        with torch.no_grad():
            if slope is None:
                slope = self._field(controls[0], x)
            predictor = torch.add(x, slope.detach(), alpha=h)  # explicit Euler
            result = anderson(
                lambda y: G(y, inputs), predictor, self.tol, self.max_iter, self.anderson_memory
            )
        self._report(self.solver_stats, "forward", step, result)
        solution = result.solution.detach()
        out = G(solution, inputs)
        if out.requires_grad:
            self._attach_implicit_gradient(out, G, solution, inputs.detach(), step)
        return out

    def _attach_implicit_gradient(
        self,
        out: torch.Tensor,
        G: Callable,
        solution: torch.Tensor,
        inputs: torch.Tensor,
        step: int,
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
            self._report(self.backward_stats, "backward", step, result)
            return result.solution

        out.register_hook(hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``x`` (``(N, *)`` -> ``(N, *)``).

        Raises:
            ValueError: if the layer returns a tensor of another shape than its
                input's (or no tensor), naming the block, the layer and both shapes.
        """
        self.solver_stats, self.backward_stats = [], []
        for step, h in enumerate(self._h):
            x = self._solve(step, x, h)
        return x

    def extra_repr(self) -> str:
        scheme = f"theta={self.theta:g}" if self.scheme == "theta" else self.scheme
        return (
            f"{scheme}, {self.num_steps} steps on [{self._t[0]:g}, {self._t[-1]:g}], "
            f"{len(self._t_theta)} controls ({self._interpolation}), tol={self.tol:g}, "
            f"max_iter={self.max_iter}"
        )
