"""Regularisation of the weights in time: smooth ``theta(t)`` across controls."""

from __future__ import annotations

import torch
from torch import nn

from ._validate import one_of
from .core.block import TimeBlock
from .grid import step_sizes

__all__ = ["time_regularization", "NORMS"]

NORMS = ("l1", "l2")


def time_regularization(module: nn.Module, norm: str = "l2") -> torch.Tensor:
    """``sum_k h_k ||theta_{k+1} - theta_k||`` over the blocks in ``module``.

    ``theta_k`` are a block's parameters at control ``k`` and
    ``h_k = t_theta[k+1] - t_theta[k]``, summed over every block (explicit,
    implicit, Hamiltonian, leapfrog; both fields of a Hamiltonian block) and
    every parameter tensor. A loss term to add, scaled by a weight of your choice:
    ``loss = task_loss + alpha * time_regularization(model)``.

    Args:
        module: a network or a block (blocks with one control add nothing).
        norm: ``"l1"``, ``sum_k h_k sum |theta_{k+1} - theta_k|``, or ``"l2"``,
            ``sum_k h_k 1/2 ||theta_{k+1} - theta_k||_2^2`` (the smoothness term of
            Haber & Ruthotto, "Stable architectures for deep neural networks",
            2017).

    Returns:
        A scalar tensor (zero if there is nothing to regularise) on the
        parameters' device, differentiable with respect to them.
    """
    one_of("norm", norm, NORMS)
    terms = []
    blocks = [m for m in module.modules() if isinstance(m, TimeBlock)]
    for block in blocks:
        if len(block.t_theta) < 2:
            continue
        steps = step_sizes(block.t_theta)
        for layers in block.control_layers():
            for (left, right), h in zip(zip(layers, layers[1:]), steps):
                for p, q in zip(left.parameters(), right.parameters()):
                    difference = q - p
                    if norm == "l1":
                        terms.append(h * difference.abs().sum())
                    else:
                        terms.append(0.5 * h * difference.square().sum())
    if not terms:
        first = next(module.parameters(), None)
        return torch.zeros((), device=None if first is None else first.device)
    return torch.stack(terms).sum()
