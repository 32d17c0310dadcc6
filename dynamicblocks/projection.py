"""L2 projection of weights in time, ``theta(t)``, onto another set of controls.

A block's ``theta(t)`` is a combination of basis functions, one per control
time ``tau_j``: indicator functions of ``[tau_j, tau_{j+1})`` for
``"constant"`` (the first extended to the left, the last to the right) and
hat functions for ``"linear"`` (held constant beyond the first and last
control). Projecting onto other controls solves the normal equations
``M c = B theta`` with the Gram matrices ``M_ij = int phi_i phi_j`` and
``B_ik = int phi_i psi_k`` over the block's interval. Every product of two
basis functions is a polynomial of degree at most 2 between consecutive knots,
so two-point Gauss-Legendre quadrature on each piece integrates it exactly.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

import torch

from .weights import check_interpolation

__all__ = ["basis_matrix", "gram_matrix", "projection_matrix"]

_GAUSS = (0.5 - math.sqrt(3) / 6, 0.5 + math.sqrt(3) / 6)  # nodes on [0, 1], weights 1/2


def basis_matrix(
    times: Sequence[float], knots: Sequence[float], interpolation: str
) -> torch.Tensor:
    """``(len(times), len(knots))`` float64: the basis functions' values at ``times``.

    Row ``i`` holds the weights with which ``theta(times[i])`` combines the
    controls at ``knots`` (the rules of :mod:`dynamicblocks.weights`).
    """
    check_interpolation(interpolation)
    values = torch.zeros(len(times), len(knots), dtype=torch.float64)
    last = len(knots) - 1
    for row, s in enumerate(times):
        j = bisect_right(knots, s) - 1
        if interpolation == "constant" or j < 0 or j >= last:
            values[row, min(max(j, 0), last)] = 1.0
        else:
            w = (s - knots[j]) / (knots[j + 1] - knots[j])
            values[row, j], values[row, j + 1] = 1.0 - w, w
    return values


def gram_matrix(
    interval: tuple[float, float],
    knots: Sequence[float],
    interpolation: str,
    other_knots: Sequence[float],
    other_interpolation: str,
) -> torch.Tensor:
    """``G_ij = integral over interval of phi_i(t) psi_j(t) dt`` (exact), float64."""
    start, stop = interval
    inner = {v for v in (*knots, *other_knots) if start < v < stop}
    points = sorted({start, stop, *inner})
    nodes, weights = [], []
    for left, right in zip(points, points[1:]):
        for g in _GAUSS:
            nodes.append(left + g * (right - left))
            weights.append(0.5 * (right - left))
    phi = basis_matrix(nodes, knots, interpolation)
    psi = basis_matrix(nodes, other_knots, other_interpolation)
    return phi.T @ (torch.tensor(weights, dtype=torch.float64).unsqueeze(1) * psi)


def projection_matrix(
    interval: tuple[float, float],
    knots: Sequence[float],
    interpolation: str,
    new_knots: Sequence[float],
    new_interpolation: str,
) -> torch.Tensor:
    """``P`` with ``theta_new = P @ theta``: the L2 projection on ``interval``.

    Args:
        interval: ``(t[0], t[-1])`` of the block.
        knots, interpolation: the current controls.
        new_knots, new_interpolation: the controls to project onto.

    Returns:
        ``(len(new_knots), len(knots))`` float64.

    Raises:
        ValueError: if a new control's basis function vanishes on the
            interval, or the new basis functions are linearly dependent there.
    """
    mass = gram_matrix(interval, new_knots, new_interpolation, new_knots, new_interpolation)
    for j, value in enumerate(torch.diagonal(mass).tolist()):
        if value <= 0.0:
            raise ValueError(
                f"t_theta[{j}] = {new_knots[j]:g}: its {new_interpolation} basis function is "
                f"zero on the block's interval [{interval[0]:g}, {interval[1]:g}]"
            )
    cross = gram_matrix(interval, new_knots, new_interpolation, knots, interpolation)
    factor, info = torch.linalg.cholesky_ex(mass)
    if info.item() != 0:
        raise ValueError(
            f"the {new_interpolation} basis functions of t_theta {tuple(new_knots)} are "
            f"linearly dependent on [{interval[0]:g}, {interval[1]:g}]"
        )
    return torch.cholesky_solve(cross, factor)
