"""Normalisation layers by name, and the TvNorm of the original DynamicBlocks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._validate import positive_int

__all__ = ["TvNorm", "NormLike", "make_norm"]

NormLike = str | Callable[[int], nn.Module] | None
"""A norm: ``"batch"``, ``"tv"``, ``None``/``"none"``, or a factory ``channels -> Module``."""


class TvNorm(nn.Module):
    """Per-pixel normalisation across channels, with a learnable bias.

    ``y = x / sqrt(sum_c x_c^2 + eps) + bias``, where the sum runs over the
    channel dimension (dim 1). Works for ``(N, C)``, ``(N, C, L)``,
    ``(N, C, H, W)`` and higher-dimensional inputs.

    Args:
        channels: number of channels ``C``.
        eps: added under the square root to avoid division by zero.
    """

    def __init__(self, channels: int, eps: float = 1e-4) -> None:
        super().__init__()
        channels = positive_int("channels", channels)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.channels = channels
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))

    def reset_parameters(self) -> None:
        """Set the bias to zero."""
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` of shape ``(N, C, *)``; returns the same shape."""
        norm = torch.sqrt(x.square().sum(dim=1, keepdim=True) + self.eps)
        return x / norm + self.bias.view((1, -1) + (1,) * (x.dim() - 2))

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"


_BATCH = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def make_norm(norm: NormLike, channels: int, spatial_dims: int = 2) -> nn.Module:
    """Build the normalisation layer ``norm`` for ``channels`` channels.

    Args:
        norm: ``"batch"`` (BatchNorm over ``spatial_dims``), ``"tv"``
            (:class:`TvNorm`), ``None`` or ``"none"`` (identity), or a callable
            taking the channel count and returning a module (e.g.
            ``functools.partial(nn.BatchNorm2d, eps=1e-4)``).
        channels: number of channels.
        spatial_dims: 0 for vector states ``(N, C)``, 2 for images.
    """
    if callable(norm):
        return norm(channels)
    if isinstance(norm, str):
        norm = norm.lower()
    if norm is None or norm == "none":
        return nn.Identity()
    if norm == "batch":
        return _BATCH[max(spatial_dims, 1)](channels)
    if norm == "tv":
        return TvNorm(channels)
    raise ValueError(
        f"unknown norm {norm!r}; expected 'batch', 'tv', None or a callable channels -> Module"
    )
