"""DynamicNet: opening layer, then dynamic blocks joined by connective units, then a head."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._validate import one_of, positive_int
from .core.block import TimeBlock
from .grid import GridLike
from .methods.alf import ALFBlock
from .methods.imex import IMEXBlock
from .methods.leapfrog import LeapfrogBlock
from .methods.lm_resnet import LMBlock
from .methods.multistep import MultistepBlock
from .methods.reversible_heun import ReversibleHeunBlock
from .methods.runge_kutta import DynamicBlock
from .methods.theta import ImplicitBlock
from .methods.verlet import HamiltonianBlock
from .nn.activations import ActLike
from .nn.connective import ConnectiveUnit
from .nn.norms import NormLike
from .tableaus import SchemeLike

__all__ = ["Stage", "DynamicNet", "BLOCKS"]

BLOCKS: dict[str, type[TimeBlock]] = {
    "dynamic": DynamicBlock,
    "implicit": ImplicitBlock,
    "hamiltonian": HamiltonianBlock,
    "leapfrog": LeapfrogBlock,
    "multistep": MultistepBlock,
    "lm": LMBlock,
    "imex": IMEXBlock,
    "reversible_heun": ReversibleHeunBlock,
    "alf": ALFBlock,
}
"""The block kinds a :class:`Stage` can name, and their classes."""


@dataclass(frozen=True)
class Stage:
    """One stage of a :class:`DynamicNet`: a block on a time grid, then a connective unit.

    The block is ``BLOCKS[block](*layer(c), t=t, scheme=scheme, t_theta=t_theta,
    interpolation=interpolation, **options)``, where ``c`` is the number of
    channels its field acts on: ``width`` for every kind but
    ``"hamiltonian"``, ``width // 2`` for it, whose state is the two channel
    halves ``(y, z)`` (``width`` must then be even). ``layer(c)`` is one module,
    or a tuple of the block's prototypes (``"imex"``: ``(layer, operator)``).
    ``scheme=None`` leaves the block's default; the Hamiltonian (Verlet),
    leapfrog and LM blocks have a fixed scheme and take none.

    Args:
        width: channels inside the block.
        out_channels: channels after the connective unit.
        layer: factory ``channels -> nn.Module`` building the layer function
            (e.g. ``lambda c: PreactDoubleLayer(c)``), or a tuple of prototypes
            (e.g. ``lambda c: (DoubleSymLayer(c), ConvOperator(c))`` for ``"imex"``).
        t: the block's state grid.
        scheme: the block's integration scheme: an explicit one (name or
            :class:`~dynamicblocks.ButcherTableau`) for ``"dynamic"``, one of
            :data:`~dynamicblocks.methods.theta.IMPLICIT_SCHEMES` for ``"implicit"``,
            ``"ab1"``..``"ab4"`` for ``"multistep"``, a key of
            :data:`~dynamicblocks.IMEX_SCHEMES` for ``"imex"``; None for the
            block's default.
        t_theta: the block's control times (default: one per step).
        interpolation: ``"constant"`` or ``"linear"``.
        pool: pooling of the connective unit (``"avg"``, ``"max"`` or None).
        kernel_size: kernel size of the connective convolution.
        block: the kind of block, a key of :data:`BLOCKS`: ``"dynamic"``
            (:class:`~dynamicblocks.DynamicBlock`), ``"implicit"``
            (:class:`~dynamicblocks.ImplicitBlock`), ``"hamiltonian"``
            (:class:`~dynamicblocks.HamiltonianBlock`), ``"leapfrog"``
            (:class:`~dynamicblocks.LeapfrogBlock`), ``"multistep"``
            (:class:`~dynamicblocks.MultistepBlock`), ``"lm"``
            (:class:`~dynamicblocks.LMBlock`) or ``"imex"``
            (:class:`~dynamicblocks.IMEXBlock`).
        options: further keyword arguments of the block, e.g.
            ``{"theta": 0.5}`` or ``{"tol": 1e-4}`` (implicit),
            ``{"start": "taylor"}`` (leapfrog), ``{"memory": "checkpoint"}``
            (see also :func:`~dynamicblocks.set_memory` for a whole network).
    """

    width: int
    out_channels: int
    layer: Callable[[int], nn.Module]
    t: GridLike
    scheme: SchemeLike | None = None
    t_theta: GridLike | None = None
    interpolation: str = "constant"
    pool: str | None = "avg"
    kernel_size: int = 1
    block: str = "dynamic"
    options: Mapping[str, Any] | None = None

    def build_block(self, name: str = "stage") -> nn.Module:
        """The stage's block, freshly built (``name`` prefixes error messages).

        Raises:
            ValueError: for an unknown ``block``, a scheme given to a block with a
                fixed scheme, or an odd ``width`` for ``"hamiltonian"``.
        """
        one_of(f"{name}.block", self.block, tuple(BLOCKS))
        kind = BLOCKS[self.block]
        kwargs = dict(self.options or {})
        if self.scheme is not None:
            if kind.fixed_scheme is not None:
                raise ValueError(
                    f"{name}.scheme = {self.scheme!r}, but a {self.block!r} block always "
                    f"steps by the {kind.fixed_scheme} scheme; leave scheme=None"
                )
            kwargs["scheme"] = self.scheme
        if self.width % kind.streams:
            multiple = "even" if kind.streams == 2 else f"a multiple of {kind.streams}"
            raise ValueError(
                f"{name}.width = {self.width}, but a {self.block!r} block splits its "
                f"channels into {kind.streams} equal streams; width must be {multiple}"
            )
        channels = self.width // kind.streams
        prototypes = self.layer(channels)
        if not isinstance(prototypes, tuple):
            prototypes = (prototypes,)
        return kind(
            *prototypes,
            t=self.t,
            t_theta=self.t_theta,
            interpolation=self.interpolation,
            **kwargs,
        )


class DynamicNet(nn.Module):
    """A ResNet-like network of dynamic blocks.

    ``opening (3x3 conv -> norm -> act) -> [block -> ConnectiveUnit] per
    stage -> global average pool -> linear``.

    Each stage's block (any kind of :data:`BLOCKS`, see
    :class:`Stage`) is built from its own layer factory, grid, scheme and
    width; its controls are then initialised independently
    (``reset_parameters``), as the layers of a
    ResNet are.

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
        for i, stage in enumerate(stages):
            block = stage.build_block(f"stages[{i}]")
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
