"""Weight initialisation used by the original DynamicBlocks code."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["clamped_xavier_normal_"]


@torch.no_grad()
def clamped_xavier_normal_(tensor: torch.Tensor) -> torch.Tensor:
    """Fill ``tensor`` with Xavier-normal values clamped to two standard deviations.

    The standard deviation is ``sqrt(2 / (fan_in + fan_out))``; values are drawn
    from the normal distribution and clamped to ``[-2 sd, 2 sd]``, as in the
    original DynamicBlocks code. Returns ``tensor``.
    """
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(tensor)
    sd = math.sqrt(2.0 / (fan_in + fan_out))
    return tensor.normal_(0.0, sd).clamp_(-2 * sd, 2 * sd)
