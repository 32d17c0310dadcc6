"""Adaptive integration with a time and a step size per sample (torchode's design).

Every sample of the batch keeps its own time, step size and controller state,
so a stiff or fast-moving sample does not shorten the steps of the others.
The field is still evaluated on the whole batch at once (a sample that has
reached the end rides along, unchanged); acceptance, the error ratio and the
next step are decided per sample. Because the field's weights must be the
same for samples at different times, the block must have a single control
(shared weights).

The error ratio of a sample is the RMS over its own entries, so a batch of one
takes the steps of :func:`~dynamicblocks.solve_adaptive`.
"""

from __future__ import annotations

import torch

from ..methods.runge_kutta import DynamicBlock
from ..tableaus import ButcherTableau
from .controller import Controller, StepSizeError
from .pair import Pair

__all__ = ["solve_per_sample"]


def _rms(value: torch.Tensor) -> torch.Tensor:
    """Per sample: the root mean square over every entry but the batch's."""
    return value.flatten(1).square().mean(1).sqrt()


def _column(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` (one per sample) shaped to broadcast against ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def solve_per_sample(
    block: DynamicBlock,
    x: torch.Tensor,
    tableau: ButcherTableau,
    controller: Controller,
    max_steps: int,
    first_step: float | None,
) -> tuple[torch.Tensor, tuple, int, tuple[int, ...], tuple[int, ...]]:
    """The final states, the accepted grids, evaluations, accepted and rejected steps per sample.

    See :func:`~dynamicblocks.solve_adaptive` (``per_sample=True``).
    """
    if len(block.t_theta) != 1:
        raise ValueError(
            f"per_sample needs shared weights (one control), but the block has "
            f"{len(block.t_theta)} controls: samples at different times would need different "
            "weights in one evaluation of the batch"
        )
    field = block.layers[0]
    start, end = block.t[0], block.t[-1]
    n = x.shape[0]
    rtol, atol = controller.rtol, controller.atol
    pair = Pair(tableau)
    exponent = tableau.embedded_order + 1
    slope = field(x)
    evaluations = 1
    if first_step is None:
        with torch.no_grad():  # Hairer's starting step, per sample
            scale = atol + rtol * x.abs()
            d0, d1 = _rms(x / scale), _rms(slope / scale)
            h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
            f1 = field(x + _column(h0, x) * slope)
            evaluations += 1
            d2 = _rms((f1 - slope) / scale) / h0
            largest = torch.maximum(d1, d2)
            h1 = torch.where(
                largest <= 1e-15,
                torch.clamp(h0 * 1e-3, min=1e-6),
                (0.01 / largest) ** (1.0 / (tableau.embedded_order + 1)),
            )
            h = torch.minimum(100 * h0, h1)
    else:
        h = torch.full((n,), float(first_step), dtype=torch.float64)
    h = h.to(torch.float64)
    t = torch.full((n,), float(start), dtype=torch.float64)
    previous = torch.zeros(n, dtype=torch.float64)
    accepted = torch.zeros(n, dtype=torch.long)
    rejected = torch.zeros(n, dtype=torch.long)
    history: list[tuple[torch.Tensor, torch.Tensor]] = []  # (t1, accepted) of every step
    y = x
    reuse = tableau.fsal
    active = t < end
    while bool(active.any()):
        over = active & (accepted >= max_steps)
        t1 = torch.where((t + h >= end) | (end - (t + h) <= 1e-12 * abs(end)), end, t + h)
        step = torch.where(active, t1 - t, 0.0)
        tiny = active & (step <= 4 * torch.finfo(torch.float64).eps * t1.abs().clamp(min=1.0))
        if bool((over | tiny).any()):  # one host read for both checks
            if bool(over.any()):
                reached = t[over].min().item()
                raise StepSizeError(
                    f"max_steps = {max_steps} accepted steps reached t = {reached!r} of "
                    f"[{start}, {end}] in a sample"
                )
            index = int(tiny.nonzero()[0])
            raise StepSizeError(
                f"the step size underflowed to {step[index].item()!r} at "
                f"t = {t[index].item()!r} in sample {index}"
            )
        column = _column(step.to(x.dtype), x)
        slopes = [slope]
        for i in range(1, tableau.stages):
            stage = y
            for j, coefficient in pair.rows[i]:
                stage = stage + (column * coefficient) * slopes[j]
            slopes.append(field(stage))
        evaluations += tableau.stages - 1
        y1 = y
        for i, weight in pair.update:
            y1 = y1 + (column * weight) * slopes[i]
        with torch.no_grad():
            error = sum((column * weight) * slopes[i] for i, weight in pair.error)
            scale = atol + rtol * torch.maximum(y.abs(), y1.abs())
            ratio = _rms(error / scale).to(torch.float64)
        accept = active & (ratio <= 1.0)
        history.append((t1, accept))
        mask = _column(accept, x)
        y = torch.where(mask, y1, y)
        t = torch.where(accept, t1, t)
        accepted += accept
        rejected += active & ~accept
        with torch.no_grad():  # the PI controller, per sample
            factor = controller.safety * ratio.clamp(min=1e-300) ** (
                -(controller.icoeff + controller.pcoeff) / exponent
            )
            if controller.pcoeff:
                factor = factor * torch.where(
                    previous > 0, previous ** (controller.pcoeff / exponent), 1.0
                )
            factor = torch.where(ratio == 0, controller.ifactor, factor)
            factor = torch.where(
                accept,
                factor.clamp(1.0, controller.ifactor),
                factor.clamp(controller.dfactor, 1.0),
            )
            h = torch.where(active, step * factor, h)
            previous = torch.where(accept, ratio, previous)
        active = t < end
        if reuse:
            slope = torch.where(mask, slopes[-1], slopes[0])
        elif bool(active.any()):
            evaluations += 1
            slope = torch.where(mask, field(y), slopes[0])
    ends = torch.stack([t1 for t1, _ in history]) if history else torch.empty(0, n)
    taken = torch.stack([accept for _, accept in history]) if history else ends.bool()
    grids_out = tuple((start, *ends[taken[:, i], i].tolist()) for i in range(n))
    return y, grids_out, evaluations, tuple(accepted.tolist()), tuple(rejected.tolist())
