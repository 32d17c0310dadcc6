"""Layer functions: the right-hand side ``f(x)`` of a dynamic block.

Every layer maps a state to a state of the same shape. Convolutional layers
take images ``(N, C, H, W)``; :class:`MLP` takes vectors ``(N, D)``. Any
``nn.Module`` with that property is a valid layer function too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import odd_kernel, positive_int
from .activations import ActLike, make_activation
from .init import clamped_xavier_normal_
from .norms import NormLike, TvNorm, make_norm

__all__ = ["DoubleLayer", "PreactDoubleLayer", "DoubleSymLayer", "MLP", "TvNorm"]


def _conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class DoubleLayer(nn.Module):
    """``f(x) = act(N2(K2 act(N1(K1 x))))`` with two convolutions.

    Args:
        channels: channels ``C`` of the state ``(N, C, H, W)``.
        width: channels between the two convolutions (default ``channels``).
        kernel_size: odd kernel size of both convolutions.
        norm: normalisation ``N1``, ``N2`` (``"batch"``, ``"tv"``, ``None`` or
            a factory).
        act: activation (name, module or factory).
        bias: convolution biases; ``None`` means "only when ``norm`` is None".
    """

    def __init__(
        self,
        channels: int,
        width: int | None = None,
        kernel_size: int = 3,
        norm: NormLike = "batch",
        act: ActLike = "relu",
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        channels = positive_int("channels", channels)
        width = positive_int("width", width if width is not None else channels)
        odd_kernel(kernel_size)
        bias = norm is None if bias is None else bias
        norm1_channels, norm2_channels = self._norm_channels(channels, width)
        self.conv1 = _conv(channels, width, kernel_size, bias)
        self.norm1 = make_norm(norm, norm1_channels)
        self.conv2 = _conv(width, channels, kernel_size, bias)
        self.norm2 = make_norm(norm, norm2_channels)
        self.act = make_activation(act)

    @staticmethod
    def _norm_channels(channels: int, width: int) -> tuple[int, int]:
        """Channels seen by ``N1`` and ``N2``: each follows a convolution."""
        return width, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        z = self.act(self.norm1(self.conv1(x)))
        return self.act(self.norm2(self.conv2(z)))


class PreactDoubleLayer(DoubleLayer):
    """Pre-activation ``f(x) = K2 act(N2(K1 act(N1 x)))`` (He et al., 2016).

    With Euler steps of size 1 and one weight set per step, a dynamic block of
    these layers is a stack of pre-activation residual units. Arguments as for
    :class:`DoubleLayer`; here each norm precedes a convolution.
    """

    @staticmethod
    def _norm_channels(channels: int, width: int) -> tuple[int, int]:
        """Channels seen by ``N1`` and ``N2``: each precedes a convolution."""
        return channels, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        z = self.conv1(self.act(self.norm1(x)))
        return self.conv2(self.act(self.norm2(z)))


class DoubleSymLayer(nn.Module):
    """Symmetric layer ``f(x) = -K^T act(N(K x + b)) - b_t`` (Ruthotto & Haber).

    One weight tensor ``K`` (``weight``, shape ``(width, C, k, k)``) is shared
    by the convolution and its transpose, so that for a monotone activation the
    layer is the negative gradient of a convex potential and the continuous
    dynamics are stable. ``bias`` (shape ``(width,)``) is added after ``K``;
    ``bias_transpose`` (shape ``(C,)``) after ``K^T``, inside the minus sign.

    Args:
        channels: channels ``C`` of the state ``(N, C, H, W)``.
        width: output channels of ``K`` (default ``channels``).
        kernel_size: odd kernel size.
        norm: normalisation between ``K`` and the activation.
        act: activation (name, module or factory).
        bias: whether the two biases exist.
    """

    def __init__(
        self,
        channels: int,
        width: int | None = None,
        kernel_size: int = 3,
        norm: NormLike = "batch",
        act: ActLike = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        channels = positive_int("channels", channels)
        width = positive_int("width", width if width is not None else channels)
        self.padding = odd_kernel(kernel_size) // 2
        self.weight = nn.Parameter(torch.empty(width, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(width)) if bias else None
        self.bias_transpose = nn.Parameter(torch.empty(channels)) if bias else None
        self.norm = make_norm(norm, width)
        self.act = make_activation(act)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Clamped Xavier-normal ``weight`` and zero biases, as in the original code."""
        clamped_xavier_normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
            nn.init.zeros_(self.bias_transpose)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        z = F.conv2d(x, self.weight, self.bias, padding=self.padding)
        z = self.act(self.norm(z))
        return -F.conv_transpose2d(z, self.weight, self.bias_transpose, padding=self.padding)

    def extra_repr(self) -> str:
        width, channels, k, _ = self.weight.shape
        return f"{channels}, width={width}, kernel_size={k}, bias={self.bias is not None}"


class MLP(nn.Module):
    """A fully connected field ``f(x)`` for vector states ``(N, D)``.

    ``depth`` linear layers ``D -> hidden -> ... -> hidden -> D`` with a norm
    and an activation after every hidden one.

    Args:
        features: state dimension ``D``.
        hidden: width of the hidden layers.
        depth: number of linear layers (at least 1; 1 means ``f(x) = W x + b``).
        act: activation after each hidden layer.
        norm: normalisation after each hidden linear layer (``None`` by default).
        bias: whether the linear layers have biases.
    """

    def __init__(
        self,
        features: int,
        hidden: int = 64,
        depth: int = 2,
        act: ActLike = "tanh",
        norm: NormLike = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        positive_int("features", features)
        positive_int("hidden", hidden)
        positive_int("depth", depth)
        sizes = [features] + [hidden] * (depth - 1) + [features]
        modules: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            modules.append(nn.Linear(n_in, n_out, bias=bias))
            if i < depth - 1:
                normalisation = make_norm(norm, n_out, spatial_dims=0)
                if not isinstance(normalisation, nn.Identity):  # no call for a no-op
                    modules.append(normalisation)
                modules.append(make_activation(act))
        self.net = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, D) -> (N, D)``."""
        for module in self.net:  # the modules in turn, without a Sequential call per step
            x = module(x)
        return x
