"""The adjoint method; it lives in :mod:`dynamicblocks.memory.adjoint`.

This module keeps ``from dynamicblocks.adjoint import adjoint_integrate`` working.
"""

from __future__ import annotations

import torch

from .memory.adjoint import adjoint_solve
from .methods.runge_kutta import DynamicBlock

__all__ = ["adjoint_integrate"]


def adjoint_integrate(
    block: DynamicBlock, x: torch.Tensor, return_trajectory: bool
) -> torch.Tensor:
    """``block(x, return_trajectory)`` with gradients by the adjoint method."""
    states = adjoint_solve(block, (x,), return_trajectory)
    if return_trajectory:
        return torch.stack([x, *(state[0] for state in states)])
    return states[-1][0]
