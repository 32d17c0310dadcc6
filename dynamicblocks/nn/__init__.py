"""Layer functions and what surrounds them: norms, activations, connectives, init, operators."""

from .activations import ACTIVATIONS, make_activation
from .connective import ConnectiveUnit
from .init import clamped_xavier_normal_
from .layers import MLP, DoubleLayer, DoubleSymLayer, PreactDoubleLayer
from .norms import TvNorm, make_norm
from .operators import ConvOperator, DenseOperator

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
    "ConvOperator",
    "DenseOperator",
]
