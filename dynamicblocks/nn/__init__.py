"""Layer functions and the pieces around the blocks: norms, activations, connective units, init."""

from .activations import ACTIVATIONS, make_activation
from .connective import ConnectiveUnit
from .init import clamped_xavier_normal_
from .layers import MLP, DoubleLayer, DoubleSymLayer, PreactDoubleLayer
from .norms import TvNorm, make_norm

__all__ = [
    "ACTIVATIONS",
    "make_activation",
    "ConnectiveUnit",
    "clamped_xavier_normal_",
    "MLP",
    "DoubleLayer",
    "DoubleSymLayer",
    "PreactDoubleLayer",
    "TvNorm",
    "make_norm",
]
