"""Grids for measuring orders of convergence: random, smoothly graded, refined."""

from __future__ import annotations

import math

import torch


def refined_grids(seed: int, levels: int = 4, steps: int = 40) -> list[tuple[float, ...]]:
    """Random smoothly graded grids of 40, 80, ... steps on [0, 1].

    ``t = phi(s)`` on uniform ``s`` with a random monotone
    ``phi(s) = s + (a sin(2 pi s) + b sin(4 pi s) / 2) / (2 pi)``, ``|a| + |b| <= 0.6``:
    steps vary by up to a factor 4 along the grid, and the error constant is
    the same at every level, so the measured rate is the order.
    """
    generator = torch.Generator().manual_seed(seed)
    a, b = (0.6 * torch.rand(2, generator=generator, dtype=torch.float64) - 0.3).tolist()
    grids = []
    for level in range(levels):
        s = torch.linspace(0.0, 1.0, steps * 2**level + 1, dtype=torch.float64)
        phase = 2 * math.pi * s
        t = s + (a * torch.sin(phase) + b * torch.sin(2 * phase) / 2) / (2 * math.pi)
        grids.append(tuple(t.tolist()))
    return grids


def rates(errors: list[float]) -> list[float]:
    """The rates ``log2(e_k / e_{k+1})`` between consecutive halvings."""
    return [math.log2(a / b) for a, b in zip(errors, errors[1:])]
