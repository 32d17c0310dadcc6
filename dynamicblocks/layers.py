"""Lives in :mod:`dynamicblocks.nn.layers`; this module keeps the old import path working."""

from .nn.layers import MLP, DoubleLayer, DoubleSymLayer, PreactDoubleLayer, TvNorm

__all__ = ["DoubleLayer", "PreactDoubleLayer", "DoubleSymLayer", "MLP", "TvNorm"]
