"""Connective units: change the channel count (and resolution) between blocks."""

from __future__ import annotations

import torch
from torch import nn

from .._validate import odd_kernel, one_of, positive_int
from .activations import ActLike, make_activation
from .norms import NormLike, make_norm

__all__ = ["ConnectiveUnit", "POOLS"]

POOLS = ("avg", "max", None)


class ConnectiveUnit(nn.Module):
    """``conv(in_channels -> out_channels) -> norm -> act -> pool``.

    Args:
        in_channels: channels of the input ``(N, in_channels, H, W)``.
        out_channels: channels of the output.
        kernel_size: odd kernel size of the convolution (padding keeps H, W).
        norm: ``"batch"``, ``"tv"``, ``None`` or a factory ``channels -> Module``.
        act: activation (name, module or factory).
        pool: ``"avg"``, ``"max"`` or ``None`` (no pooling).
        pool_size: kernel and stride of the pooling.
        bias: whether the convolution has a bias.

    Shape:
        ``(N, in_channels, H, W) -> (N, out_channels, H / pool_size, W / pool_size)``
        (floored), or ``H, W`` unchanged when ``pool`` is None.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        norm: NormLike = "batch",
        act: ActLike = "relu",
        pool: str | None = "avg",
        pool_size: int = 2,
        bias: bool = True,
    ) -> None:
        super().__init__()
        in_channels = positive_int("in_channels", in_channels)
        out_channels = positive_int("out_channels", out_channels)
        kernel_size = odd_kernel(kernel_size)
        pool_size = positive_int("pool_size", pool_size)
        one_of("pool", pool, POOLS)
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias
        )
        self.norm = make_norm(norm, out_channels)
        self.act = make_activation(act)
        if pool == "avg":
            self.pool = nn.AvgPool2d(pool_size)
        elif pool == "max":
            self.pool = nn.MaxPool2d(pool_size)
        else:
            self.pool = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W) -> (N, C_out, H', W')``."""
        return self.pool(self.act(self.norm(self.conv(x))))
