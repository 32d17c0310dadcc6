"""Anderson-accelerated fixed-point iteration, for the implicit blocks' forward and backward."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = ["FixedPointResult", "anderson"]


class FixedPointResult(NamedTuple):
    """``solution`` with ``|g(solution) - solution| / |g(solution)| = residual``."""

    solution: torch.Tensor
    iterations: int
    residual: float
    converged: bool


def _relative(difference: torch.Tensor, value: torch.Tensor) -> float:
    return (difference.norm() / value.norm().clamp_min(torch.finfo(value.dtype).tiny)).item()


def anderson(
    g: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    tol: float,
    max_iter: int,
    memory: int = 5,
    damping: float = 1.0,
) -> FixedPointResult:
    """Solve ``x = g(x)`` by Anderson acceleration (Walker & Ni, SIAM J. Numer. Anal. 2011).

    The whole tensor is one vector. Each iteration mixes the last ``memory``
    iterates so as to minimise the linearised residual (a small regularised
    least-squares problem); ``memory=0`` is the plain (damped) fixed-point
    iteration ``x <- x + damping (g(x) - x)``. Called under
    ``torch.no_grad()`` by the implicit blocks, so no iteration is recorded
    for autograd.

    Args:
        g: the map; ``g(x)`` has the shape of ``x``.
        x0: the initial guess.
        tol: stop when ``|g(x) - x| / |g(x)| <= tol`` (2-norms over all entries).
        max_iter: the most evaluations of ``g``.
        memory: how many past iterates are mixed.
        damping: the mixing parameter ``beta`` in (0, 1].

    Returns:
        The last iterate, the number of evaluations of ``g``, the relative
        residual and whether it reached ``tol``.
    """
    x = x0
    gx = g(x)
    f = gx - x
    residual = _relative(f, gx)
    dx: list[torch.Tensor] = []
    df: list[torch.Tensor] = []
    iterations = 1
    while residual > tol and iterations < max_iter:
        step = damping * f.flatten()
        if dx:
            ddx, ddf = torch.stack(dx, 1), torch.stack(df, 1)
            gram = ddf.T @ ddf
            gram += (
                1e-12
                * gram.diagonal().max().clamp_min(1e-30)
                * torch.eye(len(dx), dtype=gram.dtype, device=gram.device)
            )
            gamma = torch.linalg.solve(gram, ddf.T @ f.flatten())
            step = step - (ddx + damping * ddf) @ gamma
        x_new = x + step.view_as(x)
        g_new = g(x_new)
        f_new = g_new - x_new
        dx.append((x_new - x).flatten())
        df.append((f_new - f).flatten())
        if len(dx) > memory:
            dx.pop(0), df.pop(0)
        x, gx, f = x_new, g_new, f_new
        residual = _relative(f, gx)
        iterations += 1
    return FixedPointResult(x, iterations, residual, residual <= tol)
