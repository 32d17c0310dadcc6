"""Lives in :mod:`dynamicblocks.nn.activations`; this module keeps the old import path working."""

from .nn.activations import ACTIVATIONS, ActLike, make_activation

__all__ = ["ActLike", "ACTIVATIONS", "make_activation"]
