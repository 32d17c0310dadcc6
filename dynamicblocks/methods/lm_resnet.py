"""LM-ResNet's linear two-step method and :class:`LMBlock`.

Lu, Zhong, Li & Dong read a ResNet as forward Euler and replaced it by a
linear two-step scheme with a trainable coefficient per step::

    x_{n+1} = (1 - k_n) x_n + k_n x_{n-1} + h_n f_n(x_n)

As a linear multistep method its polynomials are
``rho(z) = (z - 1)(z + k)`` and ``sigma(z) = z``: it is zero-stable for
``|k| < 1`` and consistent with ``(1 + k) x' = f(x)``, i.e. it integrates
``x' = f(x) / (1 + k(t))``. With ``k = 0`` it is forward Euler.

References:
    Y. Lu, A. Zhong, Q. Li, B. Dong, "Beyond finite layer neural networks:
    bridging deep architectures and numerical differential equations",
    ICML 2018, arXiv:1710.10121.
    G. Huang, Y. Sun, Z. Liu, D. Sedra, K. Q. Weinberger, "Deep networks with
    stochastic depth", ECCV 2016 (the training variant).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from .._validate import real_number
from ..core.block import TimeBlock
from ..core.fields import Evaluation
from ..grid import GridLike
from .base import Method, State

__all__ = ["LMCoefficient", "LinearTwoStep", "LMBlock"]

Pair = tuple[torch.Tensor, torch.Tensor]


class LMCoefficient(nn.Module):
    """The trainable scalar ``k`` of one LM-ResNet step, as a map ``z -> k z``.

    Args:
        value: the initial ``k``; None draws it from ``U(-0.1, 0)`` (Lu et
            al.'s initialisation, there written for ``1 - k``), on every
            :meth:`reset_parameters`.
    """

    def __init__(self, value: float | None = None) -> None:
        super().__init__()
        self.value = None if value is None else real_number("k", value, "a real number")
        self.k = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``k`` = the initial value, or a fresh draw from ``U(-0.1, 0)``."""
        with torch.no_grad():
            if self.value is None:
                self.k.uniform_(-0.1, 0.0)
            else:
                self.k.fill_(self.value)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.k * z


class _Step(NamedTuple):
    index: int
    h: float
    field: Evaluation  # f_n at t_n
    coefficient: Evaluation  # k_n at t_n
    death: float  # the stochastic-depth rate of the step


def _death_rates(death_rate: float | tuple[float, float]) -> tuple[float, float]:
    pair = death_rate if isinstance(death_rate, (tuple, list)) else (death_rate, death_rate)
    if len(pair) != 2:
        raise ValueError(f"death_rate must be a number or a (start, end) pair, got {death_rate!r}")
    return tuple(
        real_number("death_rate", rate, "a probability in [0, 1)", 0.0, 1.0, open_high=True)
        for rate in pair
    )


class LinearTwoStep(Method):
    """``x_{n+1} = x_n + K_n(x_{n-1} - x_n) + h_n f_n(x_n)``, with ``K_n z = k_n z``.

    The state is ``(x_n, x_{n-1})``, then the stochastic-depth gates if any;
    ``x_{-1}`` may be missing (``None``): the first step is then forward Euler,
    as the first unit of an LM-ResNet stage.
    """

    fields = 2

    def __init__(self, death_rate: float | tuple[float, float] = 0.0) -> None:
        self.death_rate = _death_rates(death_rate)

    @property
    def name(self) -> str:
        return "lm"

    def describe(self) -> str:
        start, end = self.death_rate
        if start == end == 0.0:
            return ""
        return f"death_rate={start:g}" + ("" if start == end else f"..{end:g}")

    def plan(self, t: Sequence[float], resolve: Any) -> tuple[_Step, ...]:
        start, end = self.death_rate
        span = t[-1] - t[0]
        return tuple(
            _Step(
                k,
                t_next - t_k,
                resolve(k, 0.0, field=0),
                resolve(k, 0.0, field=1),
                start + (end - start) * (t_k - t[0]) / span,
            )
            for k, (t_k, t_next) in enumerate(zip(t, t[1:]))
        )

    def step(self, plan: _Step, state: State, evaluate: Any) -> State:
        x, x_prev, *gates = state
        slope = evaluate(plan.field, x)
        if gates:
            slope = slope * gates[0][plan.index]
        if x_prev is None:
            return (torch.add(x, slope, alpha=plan.h), x, *gates)
        x_next = torch.add(x, evaluate(plan.coefficient, torch.sub(x_prev, x)))
        return (torch.add(x_next, slope, alpha=plan.h), x, *gates)


class LMBlock(TimeBlock):
    """LM-ResNet's linear two-step block: ``x_{n+1} = (1 - k_n) x_n + k_n x_{n-1} + h_n f_n(x_n)``.

    ``f_n`` is a copy of ``layer`` and ``k_n`` a trainable scalar
    (:class:`LMCoefficient`, held in :attr:`coefficients`), both with the
    weights in time of ``t_n`` (controls at ``t_theta``, default one per step:
    one ``f`` and one ``k`` per step, as Lu et al.). Without ``x_prev`` the
    first step is forward Euler, ``x_1 = x_0 + h_0 f_0(x_0)``.

    As an ODE method the block is consistent with ``x' = f(x) / (1 + k(t))``
    (see :mod:`dynamicblocks.methods.lm_resnet`), so refining it
    (:meth:`refine_`, which refines ``k(t)`` with ``theta(t)``) converges;
    with ``k = 0`` it is forward Euler.

    Stochastic depth (Lu et al.'s training variant, after Huang et al.): with
    ``death_rate`` ``d > 0``, in training each step's ``h_n f_n(x_n)`` is
    dropped with probability ``d_n`` (one draw per step and batch) and
    otherwise scaled by ``1 / (1 - d_n)``; in evaluation it is kept as is.
    ``d_n`` is ``death_rate`` or, for a pair ``(start, end)``, linear in
    time from ``start`` at ``t[0]`` to ``end`` at ``t[-1]``, taken at ``t_n``.

    Args:
        layer: the prototype of ``f``, mapping a state to the same shape.
        t: the state grid, strictly increasing, at least two points.
        t_theta: control times of ``f`` and ``k`` (default: one per step).
        interpolation: ``"constant"`` or ``"linear"``.
        k: the initial ``k`` of every step (default: draws from ``U(-0.1, 0)``;
            every control draws its own on :meth:`reset_parameters`).
        death_rate: the stochastic-depth rate, a number or a ``(start, end)``
            pair in ``[0, 1)`` (default 0: off).
        memory: ``"full"`` or ``"checkpoint"`` (see :mod:`dynamicblocks.memory`).

    Raises:
        TypeError: if ``layer`` is not an ``nn.Module``, or a grid is not a
            sequence of real numbers.
        ValueError: for an invalid grid, interpolation, ``k``, ``death_rate``
            or memory mode, or a control time outside ``[t[0], t[-1]]`` that no
            step uses.

    Shape:
        input ``(N, *)``, output the same; ``return_pair`` gives two such
        tensors, ``return_trajectory`` ``(len(t), N, *)``.
    """

    memory_modes = LinearTwoStep.memory_modes()
    field_attributes = ("layers", "coefficients")
    field_arguments = ("layer", "k")
    fixed_scheme = "lm"

    def __init__(
        self,
        layer: nn.Module,
        t: GridLike,
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
        k: float | None = None,
        death_rate: float | tuple[float, float] = 0.0,
        memory: str = "full",
    ) -> None:
        super().__init__()
        method = LinearTwoStep(death_rate)
        self._build(method, (layer, LMCoefficient(k)), t, t_theta, interpolation, memory)
        for coefficient in self.coefficients:
            coefficient.reset_parameters()

    @property
    def death_rate(self) -> tuple[float, float]:
        """The stochastic-depth rate at ``t[0]`` and at ``t[-1]``."""
        return self._method.death_rate

    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The stochastic-depth gates of this pass: none in evaluation or without dropping."""
        if not self.training or self.death_rate == (0.0, 0.0):
            return ()
        deaths = torch.tensor([step.death for step in self._plan], dtype=x.dtype, device=x.device)
        keep = torch.rand(len(self._plan), dtype=x.dtype, device=x.device) >= deaths
        return (keep.to(x.dtype) / (1.0 - deaths),)

    def forward(
        self,
        x: torch.Tensor,
        x_prev: torch.Tensor | None = None,
        *,
        return_pair: bool = False,
        return_trajectory: bool = False,
    ) -> torch.Tensor | Pair:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``x_0 = x``.

        Args:
            x: the initial state ``x_0``.
            x_prev: the state ``x_{-1}`` (default: none, a first Euler step).
            return_pair: return ``(x_N, x_{N-1})``, which a following block can
                continue from (``x``, ``x_prev``).
            return_trajectory: return ``x_0, ..., x_N`` stacked as
                ``(len(t), N, *)``.

        Raises:
            ValueError: if both ``return_pair`` and ``return_trajectory`` are
                set, or the layer returns another shape than its input's.
        """
        if return_pair and return_trajectory:  # before the gates draw random numbers
            raise ValueError("return_pair and return_trajectory cannot both be true")
        return self._run((x, x_prev, *self._gates(x)), return_trajectory, return_pair)
