"""Hand-written twins of the library's presets, plain ``nn.Module``s, for the benchmarks.

Each registers its parameters and buffers in the library network's order with
the same shapes, so :func:`same_weights` can copy the library's state into it
entry by entry; the benchmarks then check that the outputs agree before timing.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

import dynamicblocks as db


class Connective(nn.Module):
    """``conv -> BatchNorm -> ReLU``, then average pooling by 2 if ``pool``."""

    def __init__(self, cin: int, cout: int, kernel_size: int, pool: bool, eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(cout, eps=eps)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)))
        return F.avg_pool2d(x, 2) if self.pool else x


class PreactUnit(nn.Module):
    """One pre-activation residual unit ``x + K2 relu(BN2(K1 relu(BN1 x)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(z)))


class Network(nn.Module):
    """``opening``, then each of ``blocks`` followed by its connective, then the head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.opening(x)
        for block, connective in zip(self.blocks, self.connectives):
            x = connective(block(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class PreactResNet(Network):
    """The pre-activation ResNet of ``db.preact_resnet(depth)``, written out."""

    def __init__(self, depth: int, widths=(16, 32, 64), num_classes: int = 10) -> None:
        super().__init__()
        units = (depth - 2) // 6
        self.opening = Connective(3, widths[0], 3, pool=False)
        self.blocks = nn.ModuleList(
            nn.Sequential(*(PreactUnit(w) for _ in range(units))) for w in widths
        )
        outs = widths[1:] + widths[-1:]
        self.connectives = nn.ModuleList(
            Connective(w, o, 1, pool=i < len(widths) - 1)
            for i, (w, o) in enumerate(zip(widths, outs))
        )
        self.classifier = nn.Linear(widths[-1], num_classes)


class SymWeights(nn.Module):
    """One control of a DoubleSym layer: ``K``, its two biases, the TvNorm bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.bias_transpose = nn.Parameter(torch.zeros(channels))
        self.tv_bias = nn.Parameter(torch.zeros(channels))
        nn.init.xavier_normal_(self.weight)


def sym_field(x: torch.Tensor, weight, bias, bias_transpose, tv_bias) -> torch.Tensor:
    """``-K^T relu(TvNorm(K x + b)) - b_t`` with ``TvNorm(z) = z / |z|_channels + bias``."""
    z = F.conv2d(x, weight, bias, padding=1)
    z = z / torch.sqrt(z.square().sum(1, keepdim=True) + 1e-4) + tv_bias.view(1, -1, 1, 1)
    return -F.conv_transpose2d(F.relu(z), weight, bias_transpose, padding=1)


class RK4SymBlock(nn.Module):
    """Classic RK4 with ``h = 1`` over ``t = 0..steps``; weights linear in time.

    The weights at ``t = k`` are control ``k``; at ``t = k + 1/2`` (the two
    middle stages) the average of controls ``k`` and ``k + 1``.
    """

    def __init__(self, channels: int, steps: int = 4) -> None:
        super().__init__()
        self.controls = nn.ModuleList(SymWeights(channels) for _ in range(steps + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for left, right in zip(self.controls, self.controls[1:]):
            start = list(left.parameters())
            end = list(right.parameters())
            middle = [torch.lerp(p, q, 0.5) for p, q in zip(start, end)]
            k1 = sym_field(x, *start)
            k2 = sym_field(x + 0.5 * k1, *middle)
            k3 = sym_field(x + 0.5 * k2, *middle)
            k4 = sym_field(x + k3, *end)
            x = x + (k1 + 2 * k2 + 2 * k3 + k4) / 6
        return x


class RKNet(Network):
    """The network of ``db.rknet()``, written out: widths 16-32-64-64, RK4 blocks."""

    def __init__(self, widths=(16, 32, 64, 64), num_classes: int = 10) -> None:
        super().__init__()
        self.opening = Connective(3, widths[0], 3, pool=False, eps=1e-4)
        self.blocks = nn.ModuleList(RK4SymBlock(w) for w in widths[:-1])
        self.connectives = nn.ModuleList(
            Connective(w, o, 1, pool=i < len(widths) - 2, eps=1e-4)
            for i, (w, o) in enumerate(zip(widths, widths[1:]))
        )
        self.classifier = nn.Linear(widths[-1], num_classes)


def same_weights(library: nn.Module, hand: nn.Module) -> None:
    """Copy the library network's state into the hand-written one, entry by entry."""
    source, target = library.state_dict(), hand.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{len(source)} library entries against {len(target)} hand-written")
    for (name, value), (other, slot) in zip(source.items(), target.items()):
        if value.shape != slot.shape:
            raise RuntimeError(f"{name} {tuple(value.shape)} vs {other} {tuple(slot.shape)}")
    hand.load_state_dict(dict(zip(target, source.values())))


def library_preset(name: str) -> nn.Module:
    """The library's ``rknet()`` or ``preact_resnet(depth)`` for ``"preact_resnet<depth>"``."""
    if name == "rknet":
        return db.rknet()
    match = re.fullmatch(r"preact_resnet(\d+)", name)
    if match is None:
        raise ValueError(f"model must be rknet or preact_resnet<depth>, got {name!r}")
    return db.preact_resnet(int(match.group(1)))


def build_pair(name: str) -> tuple[nn.Module, nn.Module]:
    """The library network ``name`` and its hand-written twin, with the same weights."""
    library = library_preset(name)
    # library_preset has checked the name
    hand = RKNet() if name == "rknet" else PreactResNet(int(name.removeprefix("preact_resnet")))
    same_weights(library, hand)
    return library, hand
