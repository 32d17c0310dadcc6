"""Gradients of an adaptive solve by the adjoint equation, itself solved adaptively backwards.

The forward solve keeps nothing for backward but its final state. Backward
integrates the augmented system from ``T = t[-1]`` back to ``t[0]`` (in the
reversed time ``s = T - t``)::

    dy/ds = -f(y),    da/ds = (df/dy)^T a,    dg/ds = (df/dtheta)^T a

from ``y = y(T)``, ``a = dL/dy(T)``, ``g = 0``, with the same embedded pair,
tolerances and controller; at ``s = T``, ``a`` is ``dL/dx`` and ``g`` the
gradient of the weights (Chen et al., 2018). Memory does not grow with the
number of steps; the gradient is that of the continuous problem, and
converges to the discretize-then-optimize one as the tolerances shrink.

With ``seminorm=True`` the error ratio of a backward step leaves out the
``g`` components (Kidger, Chen & Lyons, "Hey, that's not an ODE", ICML 2021):
they never feed back into the dynamics, so their error need not limit the
step, and the backward solve takes fewer steps.

With weights in time, each evaluation's gradient goes to the controls by
their interpolation weights at that time (``g`` holds every control's
parameters), and the control times end the backward steps, as the forward
ones (:mod:`dynamicblocks.adaptive.solve`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..core.resolver import Resolver
from ..methods.runge_kutta import DynamicBlock
from ..tableaus import ButcherTableau
from .controller import Controller, StepSizeError, error_ratio, initial_step
from .pair import Pair

__all__ = ["adjoint_solve"]


def _integrate(
    field: Callable[[float, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    span: float,
    tableau: ButcherTableau,
    controller: Controller,
    max_steps: int,
    measured: int,
    breaks: list[float],
) -> tuple[torch.Tensor, int]:
    """``z`` integrated over ``[0, span]`` by the pair; the error uses ``z[:measured]`` only.

    Steps end at every time of ``breaks`` (sorted).
    """
    exponent, pair, c = tableau.embedded_order + 1, Pair(tableau), tableau.c
    slope = field(0.0, z)
    evaluations = 1

    def counted(time: float, value: torch.Tensor) -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        return field(time, value)

    h = initial_step(counted, 0.0, z, slope, tableau.embedded_order, controller)
    t, previous, accepted = 0.0, 0.0, 0
    while t < span:
        if accepted == max_steps:
            raise StepSizeError(f"max_steps = {max_steps} backward steps reached s = {t!r}")
        limit = next((time for time in breaks if time > t), span)
        t1 = limit if t + h >= limit or limit - (t + h) <= 1e-12 * abs(limit) else t + h
        step = t1 - t
        if step <= 4 * math.ulp(max(abs(t), abs(t1))):
            raise StepSizeError(f"the backward step size underflowed to {step!r} at s = {t!r}")
        slopes, z1, error = pair.step(
            z, step, lambda i, stage, t=t, step=step: field(t + c[i] * step, stage), first=slope
        )
        evaluations += tableau.stages - 1
        ratio = error_ratio(
            error[:measured], z[:measured], z1[:measured], controller.rtol, controller.atol
        )
        if ratio <= 1.0:
            t, z, accepted = t1, z1, accepted + 1
            h = step * controller.factor(ratio, previous, exponent, accepted=True)
            previous = ratio
            if t < span:
                slope = slopes[-1] if tableau.fsal else field(t, z)
                evaluations += 0 if tableau.fsal else 1
        else:
            h = step * controller.factor(ratio, previous, exponent, accepted=False)
    return z, evaluations


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, options: dict, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        ctx.options = options
        y = options.pop("y")  # the forward solve's, made without autograd
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        options = ctx.options
        (y,) = ctx.saved_tensors
        block: DynamicBlock = options["block"]
        params = options["params"]
        size = y.numel()
        end = block.t[-1]

        def field(s: float, z: torch.Tensor) -> torch.Tensor:
            """The augmented field at reversed time ``s``, i.e. at ``t = T - s``."""
            time = end - s
            resolver = Resolver((time, time + 1.0), block.t_theta, block.interpolation, groups=1)
            evaluation = resolver(0, 0.0)
            fields = block.fields(detached=True, slots=resolver.slots()[0])
            grads: dict = {}
            f, back = fields.vjp(
                evaluation, z[:size].view_as(y), z[size : 2 * size].view_as(y), grads
            )
            grads = fields.parameter_gradients(grads)
            pieces = [-f.flatten(), back.flatten()]
            pieces += [
                grads[p].flatten() if p in grads else torch.zeros_like(p).flatten() for p in params
            ]
            return torch.cat(pieces)

        zeros = [torch.zeros(p.numel(), dtype=y.dtype, device=y.device) for p in params]
        z = torch.cat([y.detach().flatten(), grad.flatten(), *zeros])
        measured = 2 * size if options["seminorm"] else z.numel()
        span = block.t[-1] - block.t[0]
        z, evaluations = _integrate(
            field,
            z,
            span,
            options["tableau"],
            options["controller"],
            options["max_steps"],
            measured,
            sorted(end - time for time in block.t_theta if block.t[0] < time < end),
        )
        options["backward_evaluations"] = evaluations
        grad_x = z[size : 2 * size].view_as(y)
        grads, offset = [], 2 * size
        for p in params:
            grads.append(z[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        return (None, grad_x, *grads)


def adjoint_solve(
    block: DynamicBlock,
    x: torch.Tensor,
    y: torch.Tensor,
    tableau: ButcherTableau,
    controller: Controller,
    max_steps: int,
    seminorm: bool,
) -> tuple[torch.Tensor, dict]:
    """``y``, the forward solve's final state from ``x``, with the adjoint backward attached.

    Also returns the options, which hold the work done.

    After backward, ``options["backward_evaluations"]`` holds the backward
    solve's field evaluations.
    """
    params = [p for layer in block.layers for p in layer.parameters() if p.requires_grad]
    options = {
        "y": y,
        "params": params,
        "block": block,
        "tableau": tableau,
        "controller": controller,
        "max_steps": max_steps,
        "seminorm": seminorm,
    }
    return _Adjoint.apply(options, x, *params), options
