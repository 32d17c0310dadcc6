"""The base of every block; it lives in :mod:`dynamicblocks.core`.

This module keeps ``from dynamicblocks.timeblock import TimeBlock, ...`` working.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._validate import check_module, format_times
from .core.block import TimeBlock
from .core.fields import Evaluation, Fields, Slot
from .weights import StageControl

__all__ = ["TimeBlock", "blend_parameters", "evaluate_control", "check_module", "format_times"]


def blend_parameters(
    names: tuple[str, ...], left: nn.Module, right: nn.Module, weight: float
) -> dict[str, torch.Tensor]:
    """``(1 - weight) * left + weight * right`` for every parameter, keyed by ``names``."""
    pairs = zip(names, left.parameters(), right.parameters())
    return {name: torch.lerp(p, q, weight) for name, p, q in pairs}


def evaluate_control(
    layers: Sequence[nn.Module],
    names: tuple[str, ...],
    control: StageControl,
    x: torch.Tensor,
    block: str | None = None,
    shape: torch.Size | None = None,
) -> torch.Tensor:
    """The field at ``x`` with the weights ``control`` stands for (checked when ``block`` is given).

    Uses the core's :class:`~dynamicblocks.core.Fields` on one control.
    """
    slots = [] if control.right is None else [Slot(0, control)]
    fields = Fields([layers], [names], slots, block or "block")
    evaluation = Evaluation(0, control.owner, None if control.right is None else 0)
    if block is None:
        layer = layers[control.owner]
        if control.right is None:
            return layer(x)
        return torch.func.functional_call(layer, fields.blends[0], (x,))
    return fields(evaluation, x, shape)
