"""SGD with selective weight decay, learning-rate schedules and box constraints."""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from ..nn.norms import TvNorm
from .config import WEIGHT_DECAY_ON, TrainConfig

__all__ = [
    "param_groups",
    "is_norm_layer",
    "make_optimizer",
    "make_scheduler",
    "step_milestones",
    "StepSchedule",
    "GeometricSchedule",
    "BoxConstraints",
]

# The original DynamicBlocks CIFAR-10 run: 60/20/20/20 of 120 epochs at 0.1/0.01/0.001/0.0001.
_STEP_FRACTIONS = (1 / 2, 2 / 3, 5 / 6)
_NORM_TYPES: tuple[type, ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    TvNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_NORM_NAME = re.compile(r"Norm(\d+d)?$")


def is_norm_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer.

    True for torch's BatchNorm, SyncBatchNorm, InstanceNorm, GroupNorm,
    LayerNorm, LocalResponseNorm and RMSNorm, the library's
    :class:`~dynamicblocks.TvNorm`, and any class whose name ends in
    ``Norm`` (or ``Norm1d``, ``Norm2d``, ...).
    """
    return isinstance(module, _NORM_TYPES) or bool(_NORM_NAME.search(type(module).__name__))


def param_groups(model: nn.Module, weight_decay: float, on: str = "kernels") -> list[dict]:
    """Two optimiser groups: decayed and not decayed. Frozen parameters are left out.

    Args:
        model: the network.
        weight_decay: the decayed group's weight decay.
        on: ``"kernels"``: parameters with 2 or more dimensions (convolution
            kernels, linear weights) are decayed; biases and the affine
            parameters of norm layers, which are vectors, are not.
            ``"all_but_norms"``: as the original DynamicBlocks code, every
            parameter but those of normalisation layers
            (:func:`is_norm_layer`) is decayed, biases included.
    """
    if on not in WEIGHT_DECAY_ON:
        raise ValueError(f"on must be one of {', '.join(WEIGHT_DECAY_ON)}, got {on!r}")
    if on == "kernels":
        decayed = lambda param: param.ndim >= 2  # noqa: E731
    else:
        norm_ids = {
            id(param)
            for module in model.modules()
            if is_norm_layer(module)
            for param in module.parameters(recurse=False)
        }
        decayed = lambda param: id(param) not in norm_ids  # noqa: E731
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if decayed(param) else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD over :func:`param_groups` with the config's lr, momentum and Nesterov flag."""
    return torch.optim.SGD(
        param_groups(model, config.weight_decay, config.weight_decay_on),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )


def step_milestones(epochs: int, fractions: tuple[float, ...] = _STEP_FRACTIONS) -> list[int]:
    """The epochs ``max(1, round(epochs * f))`` for ``f`` in ``fractions``."""
    return [max(1, round(epochs * f)) for f in fractions]


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


class GeometricSchedule:
    """The original's CIFAR-100 schedule, in ninths of ``epochs``, constant within an epoch.

    With ``b_k = round(epochs * k / 9)``: factor 1 before ``b_3``; from
    ``b_3`` to ``b_4`` it falls geometrically from 1 to 0.1 (both ends
    included, one value per epoch); 0.1 from ``b_4`` to ``b_5``; then the same
    twice more, down to 0.001 from ``b_8`` on. For 180 epochs: 60 at 1, 20
    from 1 to 0.1, 20 at 0.1, 20 from 0.1 to 0.01, 20 at 0.01, 20 from 0.01
    to 0.001 and 20 at 0.001 (times ``lr``), as the original's
    ``np.geomspace`` rates.

    Called with the iteration count.
    """

    def __init__(self, epochs: int, steps_per_epoch: int) -> None:
        self.bounds = [round(epochs * k / 9) for k in range(3, 9)]
        self.steps_per_epoch = steps_per_epoch

    def factor(self, epoch: int) -> float:
        """The learning-rate factor of epoch ``epoch`` (from 0)."""
        level = 1.0
        for start, stop in zip(self.bounds[::2], self.bounds[1::2]):
            if epoch < start:
                return level
            if epoch < stop:
                length = stop - start
                return level * 10.0 ** (-(epoch - start) / (length - 1)) if length > 1 else level
            level /= 10.0
        return level

    def __call__(self, iteration: int) -> float:
        return self.factor(iteration // self.steps_per_epoch)


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
    ``config.milestones``, by default ``max(1, round(epochs * f))`` for ``f``
    in ``1/2, 2/3, 5/6`` (60, 80, 100 for 120 epochs); ``"geometric"`` is
    :class:`GeometricSchedule`; ``"cosine"`` anneals it to 0 over all
    iterations; ``"onecycle"`` is :class:`~torch.optim.lr_scheduler.OneCycleLR`
    with ``max_lr = lr``; ``"constant"`` keeps it. The step and geometric
    rates change only between epochs.
    """
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(total, 2))
    if config.schedule == "step":
        milestones = list(config.milestones or step_milestones(config.epochs))
        return LambdaLR(optimizer, StepSchedule(milestones, steps_per_epoch))
    if config.schedule == "geometric":
        return LambdaLR(optimizer, GeometricSchedule(config.epochs, steps_per_epoch))
    if config.schedule == "cosine":
        return LambdaLR(optimizer, _CosineSchedule(max(total, 1)))
    return LambdaLR(optimizer, _constant)


class BoxConstraints:
    """Project parameters onto boxes after each step, exactly as the original code did.

    The original's ``ClippedModule.clip`` clamped every convolution's kernel
    and bias to ``[-conv, conv]`` (``conv``, ``conv1``, ``conv2``; in a
    DoubleSymLayer the kernel shared by the convolution and its transpose),
    the other weights (linear layers, norm scales) to ``[-other, other]``,
    and left every other bias free: the norms' biases, the linear layer's
    and the transposed convolution's (``convt.bias``). Here: kernels
    (parameters with 3 or more dimensions) and the other parameters of a
    module owning a kernel (its biases) are clamped to ``[-conv, conv]``,
    except the biases of a transposed convolution (a
    :class:`~torch.nn.ConvTranspose2d`'s ``bias``, a
    :class:`~dynamicblocks.DoubleSymLayer`'s ``bias_transpose``); the
    remaining parameters named ``weight`` to ``[-other, other]``; other
    biases are left free.
    """

    def __init__(self, conv: float = 0.5, other: float = 1.5) -> None:
        self.conv, self.other = float(conv), float(other)

    @staticmethod
    def _free(module: nn.Module, name: str) -> bool:
        """Whether ``name`` is a transposed convolution's bias, which the original left free."""
        transposed = isinstance(module, nn.modules.conv._ConvTransposeNd) and name == "bias"
        return transposed or name == "bias_transpose"

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> None:
        for module in model.modules():
            params = dict(module.named_parameters(recurse=False))
            has_kernel = any(p.ndim >= 3 for p in params.values())
            for name, param in params.items():
                if has_kernel:
                    if not self._free(module, name):
                        param.clamp_(-self.conv, self.conv)
                elif name.endswith("weight"):
                    param.clamp_(-self.other, self.other)
