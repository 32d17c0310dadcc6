"""Step-size control for adaptive integration: error norms, the PI controller, the first step.

The error of a step is measured, as in torchdiffeq and Hairer, Norsett &
Wanner (*Solving ODEs I*, II.4), by the root mean square over all entries of::

    err / (atol + rtol * max(|x_k|, |x_{k+1}|))

and the step is accepted when this *error ratio* is at most 1. The next step
is ``h * factor`` with (Soederlind's PI controller; ``pcoeff = 0`` is the
classical I controller of torchdiffeq and torchode's defaults)::

    factor = safety * ratio_k ** (-(icoeff + pcoeff) / q) * ratio_{k-1} ** (pcoeff / q)

clipped to ``[1, ifactor]`` after an accepted step (as torchdiffeq: the step
never shrinks after an accepted one) and to ``[dfactor, 1]`` after a
rejection, with ``q`` the embedded order plus one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._validate import real_number

__all__ = ["Controller", "StepSizeError", "error_ratio", "initial_step"]

Tolerance = float | torch.Tensor


class StepSizeError(RuntimeError):
    """An adaptive solve could not go on: too many steps, or a step too small to take."""


def _tolerance(name: str, value: Tolerance) -> Tolerance:
    """``value`` if it is a positive finite number or a tensor of them, else raise."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 0 or not bool(torch.isfinite(value).all() and (value > 0).all()):
            raise ValueError(f"{name} must hold positive finite numbers, got {value!r}")
        return value
    return real_number(
        name, value, "a positive finite number", 0.0, math.inf, open_low=True, open_high=True
    )


def error_ratio(
    error: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, rtol: Tolerance, atol: Tolerance
) -> float:
    """The RMS of ``error / (atol + rtol max(|x0|, |x1|))`` over all entries, on the host."""
    with torch.no_grad():
        scale = atol + rtol * torch.maximum(x0.abs(), x1.abs())
        return float(torch.linalg.vector_norm(error / scale) / math.sqrt(error.numel()))


@dataclass(frozen=True)
class Controller:
    """The tolerances and the PI controller of an adaptive solve.

    Args:
        rtol: relative tolerance, a positive number or a tensor broadcastable
            to the state (per component).
        atol: absolute tolerance, likewise.
        safety: the factor applied to the optimal step.
        ifactor: the largest growth of the step after an accepted step.
        dfactor: the largest shrinking of the step.
        pcoeff: the proportional coefficient (0: an I controller).
        icoeff: the integral coefficient.

    Raises:
        ValueError: for a tolerance that is not positive and finite, or
            coefficients out of range, naming the argument.
    """

    rtol: Tolerance = 1e-6
    atol: Tolerance = 1e-8
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    pcoeff: float = 0.0
    icoeff: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rtol", _tolerance("rtol", self.rtol))
        object.__setattr__(self, "atol", _tolerance("atol", self.atol))
        real_number("safety", self.safety, "a number in (0, 1]", 0.0, 1.0, open_low=True)
        real_number("ifactor", self.ifactor, "a finite number >= 1", 1.0, math.inf, open_high=True)
        real_number("dfactor", self.dfactor, "a number in (0, 1]", 0.0, 1.0, open_low=True)
        real_number("pcoeff", self.pcoeff, "a finite number >= 0", 0.0, math.inf, open_high=True)
        real_number(
            "icoeff",
            self.icoeff,
            "a positive finite number",
            0.0,
            math.inf,
            open_low=True,
            open_high=True,
        )

    def factor(self, ratio: float, previous: float, exponent: int, accepted: bool) -> float:
        """The factor of the next step, from this step's and the last accepted step's ratios."""
        if ratio == 0.0:
            return self.ifactor if accepted else 1.0
        factor = self.safety * ratio ** (-(self.icoeff + self.pcoeff) / exponent)
        if self.pcoeff and previous > 0.0:
            factor *= previous ** (self.pcoeff / exponent)
        if accepted:  # as torchdiffeq: an accepted step is never followed by a shorter one
            return min(self.ifactor, max(1.0, factor))
        return min(1.0, max(self.dfactor, factor))


def initial_step(
    field: Callable[[float, torch.Tensor], torch.Tensor],
    t0: float,
    x0: torch.Tensor,
    f0: torch.Tensor,
    order: int,
    controller: Controller,
) -> float:
    """Hairer, Norsett & Wanner's starting step (*Solving ODEs I*, II.4), one more evaluation.

    ``order`` is the order of the error estimate's solution (the embedded order).
    """
    scale = controller.atol + controller.rtol * x0.abs()

    def rms(value: torch.Tensor) -> float:
        return float(torch.linalg.vector_norm(value / scale) / math.sqrt(value.numel()))

    d0, d1 = rms(x0), rms(f0)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = field(t0 + h0, x0 + h0 * f0)
    d2 = rms(f1 - f0) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1)
