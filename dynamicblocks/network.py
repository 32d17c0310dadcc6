"""DynamicNet: opening layer, then dynamic blocks joined by connective units, then a head."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ._validate import positive_int
from .activations import ActLike
from .block import DynamicBlock
from .connective import ConnectiveUnit
from .grid import GridLike
from .norms import NormLike
from .tableaus import SchemeLike

__all__ = ["Stage", "DynamicNet"]


@dataclass(frozen=True)
class Stage:
    """One stage of a :class:`DynamicNet`: a dynamic block, then a connective unit.

    Args:
        width: channels inside the dynamic block.
        out_channels: channels after the connective unit.
        layer: factory ``channels -> nn.Module`` building the layer function
            (e.g. ``lambda c: PreactDoubleLayer(c)``).
        t: the block's state grid.
        scheme: the block's integration scheme.
        t_theta: the block's control times (default: one per step).
        interpolation: ``"constant"`` or ``"linear"``.
        pool: pooling of the connective unit (``"avg"``, ``"max"`` or None).
        kernel_size: kernel size of the connective convolution.
    """

    width: int
    out_channels: int
    layer: Callable[[int], nn.Module]
    t: GridLike
    scheme: SchemeLike = "euler"
    t_theta: GridLike | None = None
    interpolation: str = "constant"
    pool: str | None = "avg"
    kernel_size: int = 1


class DynamicNet(nn.Module):
    """A ResNet-like network of dynamic blocks.

    ``opening (3x3 conv -> norm -> act) -> [DynamicBlock -> ConnectiveUnit] per
    stage -> global average pool -> linear``.

    Each stage's block is built from its own layer factory, grid, scheme and
    width; its controls are then initialised independently
    (:meth:`DynamicBlock.reset_parameters`), as the layers of a ResNet are.

    Args:
        stages: the stages, in order. ``stages[i + 1].width`` must equal
            ``stages[i].out_channels``.
        in_channels: channels of the input images.
        num_classes: outputs of the final linear layer.
        norm: normalisation of the opening and the connective units.
        act: activation of the opening and the connective units.

    Shape:
        ``(N, in_channels, H, W) -> (N, num_classes)``.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        in_channels: int = 3,
        num_classes: int = 10,
        norm: NormLike = "batch",
        act: ActLike = "relu",
    ) -> None:
        super().__init__()
        stages = tuple(stages)
        if not stages:
            raise ValueError("stages must contain at least one Stage")
        for i, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                raise TypeError(f"stages[{i}] must be a Stage, got {type(stage).__name__}")
            if i and stage.width != stages[i - 1].out_channels:
                raise ValueError(
                    f"stages[{i}].width = {stage.width} but stages[{i - 1}].out_channels = "
                    f"{stages[i - 1].out_channels}; they must match"
                )
        in_channels = positive_int("in_channels", in_channels)
        num_classes = positive_int("num_classes", num_classes)
        self.opening = ConnectiveUnit(
            in_channels, stages[0].width, kernel_size=3, norm=norm, act=act, pool=None
        )
        self.blocks = nn.ModuleList()
        self.connectives = nn.ModuleList()
        for stage in stages:
            block = DynamicBlock(
                stage.layer(stage.width), stage.t, stage.scheme, stage.t_theta, stage.interpolation
            )
            block.reset_parameters()
            self.blocks.append(block)
            self.connectives.append(
                ConnectiveUnit(
                    stage.width,
                    stage.out_channels,
                    kernel_size=stage.kernel_size,
                    norm=norm,
                    act=act,
                    pool=stage.pool,
                )
            )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(stages[-1].out_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features ``(N, C_last)`` before the classifier."""
        x = self.opening(x)
        for block, connective in zip(self.blocks, self.connectives):
            x = connective(block(x))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W) -> (N, num_classes)`` logits."""
        return self.classifier(self.features(x))
