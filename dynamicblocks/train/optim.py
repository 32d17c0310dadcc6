"""SGD with selective weight decay, learning-rate schedules and box constraints."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from .config import TrainConfig

__all__ = ["param_groups", "make_optimizer", "make_scheduler", "StepSchedule", "BoxConstraints"]

# The original DynamicBlocks run: 60/20/20/20 of 120 epochs at 0.1/0.01/0.001/0.0001.
_STEP_FRACTIONS = (1 / 2, 2 / 3, 5 / 6)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser groups: decayed (kernels, ``ndim >= 2``) and not decayed (the rest).

    Biases and the affine parameters of norm layers are vectors, so they fall
    in the group without weight decay. Frozen parameters are left out.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD over :func:`param_groups` with the config's lr, momentum and Nesterov flag."""
    return torch.optim.SGD(
        param_groups(model, config.weight_decay),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )


class StepSchedule:
    """Learning-rate factor ``0.1 ** k`` in epoch ``e``, ``k`` the milestones ``<= e``.

    Called with the iteration count; ``milestones`` are epochs.
    """

    def __init__(self, milestones: list[int], steps_per_epoch: int) -> None:
        self.milestones = milestones
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, iteration: int) -> float:
        epoch = iteration // self.steps_per_epoch
        return 0.1 ** sum(epoch >= m for m in self.milestones)


class _CosineSchedule:
    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps

    def __call__(self, iteration: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(iteration, self.total_steps) / self.total_steps))


def _constant(iteration: int) -> float:
    return 1.0


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> LRScheduler:
    """The config's schedule, stepped once per optimiser step.

    ``"step"`` divides the learning rate by 10 at the epochs
    ``max(1, round(epochs * f))`` for ``f`` in ``1/2, 2/3, 5/6`` (60, 80,
    100 for 120 epochs); ``"cosine"`` anneals it to 0 over all iterations;
    ``"onecycle"`` is :class:`~torch.optim.lr_scheduler.OneCycleLR` with
    ``max_lr = lr``; ``"constant"`` keeps it.
    """
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(total, 2))
    if config.schedule == "step":
        milestones = [max(1, round(config.epochs * f)) for f in _STEP_FRACTIONS]
        return LambdaLR(optimizer, StepSchedule(milestones, steps_per_epoch))
    if config.schedule == "cosine":
        return LambdaLR(optimizer, _CosineSchedule(max(total, 1)))
    return LambdaLR(optimizer, _constant)


class BoxConstraints:
    """Project parameters onto boxes after each step, as the original code did.

    Kernels (parameters with 3 or more dimensions) and the other parameters
    of a module owning a kernel (its biases) are clamped to
    ``[-conv, conv]``; the remaining parameters named ``weight`` (linear
    layers, norm scales) to ``[-other, other]``; other biases are left free.
    """

    def __init__(self, conv: float = 0.5, other: float = 1.5) -> None:
        self.conv, self.other = float(conv), float(other)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> None:
        for module in model.modules():
            params = dict(module.named_parameters(recurse=False))
            has_kernel = any(p.ndim >= 3 for p in params.values())
            for name, param in params.items():
                if has_kernel:
                    param.clamp_(-self.conv, self.conv)
                elif name.endswith("weight"):
                    param.clamp_(-self.other, self.other)
