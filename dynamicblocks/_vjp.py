"""Vector-Jacobian products of one control's field, for the hand-written backward passes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .timeblock import evaluate_control
from .weights import StageControl

__all__ = ["field_vjp", "accumulate"]

ParamGrads = list[tuple[nn.Parameter, torch.Tensor]]


def field_vjp(
    layers: Sequence[nn.Module],
    names: tuple[str, ...],
    control: StageControl,
    x: torch.Tensor,
    cotangent: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None, ParamGrads]:
    """Evaluate the field of ``control`` at ``x`` and pull ``cotangent`` back through it.

    Returns ``f(x)`` (detached), ``(df/dx)^T v`` (``None`` where ``f`` does not
    depend on ``x``) and ``(df/dtheta)^T v`` for every trainable parameter of
    the control(s) the field reads: a blended control's two modules each get
    their share through ``torch.lerp``.
    """
    used = [control.left] if control.right is None else [control.left, control.right]
    params = list(dict.fromkeys(p for j in used for p in layers[j].parameters() if p.requires_grad))
    with torch.enable_grad():
        x = x.detach().requires_grad_()
        f = evaluate_control(layers, names, control, x)
    if not f.requires_grad:  # neither x nor a parameter reaches the field
        return f, None, []
    grads = torch.autograd.grad(f, (x, *params), cotangent, allow_unused=True)
    pairs = [(p, g) for p, g in zip(params, grads[1:]) if g is not None]
    return f.detach(), grads[0], pairs


def accumulate(
    grads: dict[nn.Parameter, torch.Tensor],
    pairs: Iterable[tuple[nn.Parameter, torch.Tensor]],
    weight: float = 1.0,
) -> None:
    """``grads[p] += weight * g`` for every ``(p, g)`` in ``pairs`` (new entries as needed)."""
    if weight == 0.0:
        return
    for param, grad in pairs:
        if param in grads:
            grads[param].add_(grad, alpha=weight)
        else:
            grads[param] = grad * weight
